//! schemas/openapi.yaml and the router agree: every route the router declares is in the spec
//! with the same methods, every route of the spec answers (with 401 when protected) on the
//! running server, and only the routes the spec marks `security: []` are open.

mod common;

use common::TestArchive;
use std::collections::BTreeSet;

/// A route: (path, method).
type Routes = BTreeSet<(String, String)>;

/// All routes of the spec and the open ones, read from its indentation: paths at two spaces,
/// methods at four.
fn spec_routes() -> (Routes, Routes) {
    let spec =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/openapi.yaml"))
            .unwrap();
    let (mut all, mut open) = (BTreeSet::new(), BTreeSet::new());
    let mut in_paths = false;
    let (mut path, mut method) = (String::new(), String::new());
    for line in spec.lines() {
        if line == "paths:" {
            in_paths = true;
            continue;
        }
        if !in_paths {
            continue;
        }
        if let Some(p) = line.strip_prefix("  /") {
            path = format!("/{}", p.trim_end_matches(':'));
        } else if let Some(m) = line.strip_prefix("    ").filter(|l| !l.starts_with(' ')) {
            let m = m.trim_end_matches(':');
            if ["get", "post", "delete", "put", "patch"].contains(&m) {
                method = m.to_uppercase();
                all.insert((path.clone(), method.clone()));
            }
        } else if line.trim() == "security: []" && line.starts_with("      ") {
            open.insert((path.clone(), method.clone()));
        }
    }
    (all, open)
}

/// (path, method) pairs the router declares: each `.route("…", get(…).post(…))` of every source
/// file of the HTTP door.
fn router_routes() -> Routes {
    let mut out = BTreeSet::new();
    let sources = walkdir::WalkDir::new(concat!(env!("CARGO_MANIFEST_DIR"), "/crates/http/src"))
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"));
    for file in sources {
        let src = std::fs::read_to_string(&file).unwrap();
        let mut rest = src.as_str();
        while let Some(i) = rest.find(".route(") {
            rest = &rest[i + ".route(".len()..];
            let (mut depth, mut end) = (1, 0);
            for (j, c) in rest.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    end = j;
                    break;
                }
            }
            let call = &rest[..end];
            // axum's catch-all `{*name}` is OpenAPI's `{name}`
            let path = call.split('"').nth(1).unwrap().replace("{*", "{");
            // a method router is `get(`, `.post(`, …: the name not part of a longer identifier
            for m in ["get", "post", "delete", "put", "patch"] {
                let pattern = format!("{m}(");
                let declared = call.match_indices(&pattern).any(|(i, _)| {
                    call[..i]
                        .chars()
                        .next_back()
                        .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':'))
                });
                if declared {
                    out.insert((path.clone(), m.to_uppercase()));
                }
            }
        }
    }
    out
}

#[test]
fn router_and_spec_agree() {
    let (spec, open) = spec_routes();
    let router = router_routes();
    assert!(router.len() > 20, "routes found in the sources: {router:?}");
    assert_eq!(
        spec, router,
        "schemas/openapi.yaml and the router declare different routes"
    );

    let t = TestArchive::new();
    let server = t.serve();
    for (path, method) in &spec {
        let concrete = path
            .replace("{study}", "1.2.3")
            .replace("{series}", "1.2.4")
            .replace("{instance}", "1.2.5")
            .replace("{frames}", "1")
            .replace("{tag}", "7FE00010")
            .replace("{file}", "common.js");
        let url = format!("http://{}{concrete}", server.http);
        let r = ureq::request(method, &url).call();
        let status = match r {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(code, _)) => code,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        if open.contains(&(path.clone(), method.clone())) {
            assert_ne!(status, 401, "{method} {path} is open in the spec");
            assert_ne!(status, 404, "{method} {path}");
        } else {
            assert_eq!(status, 401, "{method} {path} needs credentials");
        }
    }
}
