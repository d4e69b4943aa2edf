//! Replicas on cloud object stores (S3 and the servers that speak it, Google Cloud Storage,
//! Azure Blob): how a replica URL becomes an object_store client.
//!
//! A URL names the bucket and an optional prefix, and may carry the store's non-secret options as
//! query parameters, so that each replica can be a provider of its own:
//! `s3://strata/archive?endpoint=https://s3.provider-b.example&region=eu-2`. Secrets never go in
//! a URL (URLs appear in logs and error messages): they come from the provider's usual
//! environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, ...; `GOOGLE_*`;
//! `AZURE_*`), or, for a replica whose URL says `env=PROVIDER_B_`, from the same variables under
//! that prefix instead (`PROVIDER_B_ACCESS_KEY_ID`, ...: what `garage key export-env --prefix`
//! writes). No other environment variable reaches the client: a `TOKEN` or `REGION` set for
//! something else must not become a session token or a region.
//!
//! A store may name the storage class its objects are written in (`storage_class=STANDARD_IA`
//! on S3, `NEARLINE` on Google Cloud Storage, an access tier such as `Cool` on Azure): a cold
//! store on a cheaper class, say. The provider checks the name.
//!
//! Writes are plain PUTs and multipart uploads, never conditional ones (`If-None-Match`), which
//! not every S3 server honours (Garage does not). None is needed: a blob's name is the keyed hash
//! of its plaintext, so a second write under a name carries the same plaintext as the first.

use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use std::sync::Arc;
use url::Url;

/// The URL parameter naming the environment prefix a replica's settings are read under.
const ENV_PARAMETER: &str = "env";
/// The URL parameter naming the storage class (S3, Google Cloud Storage) or access tier
/// (Azure) every object the store is given is written in: `storage_class=GLACIER_IR`.
const STORAGE_CLASS_PARAMETER: &str = "storage_class";

/// Words in an option's name that make it a secret, refused in a URL.
const SECRET_WORDS: [&str; 7] = [
    "secret",
    "token",
    "password",
    "access_key",
    "sas",
    "key_base64",
    "service_account",
];

/// The provider a URL scheme names: its environment variables' prefix, and the names of its
/// options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Provider {
    Aws,
    Google,
    Azure,
}

impl Provider {
    fn of(scheme: &str) -> Result<Provider, String> {
        match scheme {
            "s3" | "s3a" => Ok(Provider::Aws),
            "gs" => Ok(Provider::Google),
            "az" | "azure" | "abfs" | "abfss" | "adl" => Ok(Provider::Azure),
            other => Err(format!(
                "unknown scheme {other}:// (use file://, memory://, s3://, gs:// or az://)"
            )),
        }
    }

    /// The prefix of the provider's usual environment variables.
    fn env_prefix(self) -> &'static str {
        match self {
            Provider::Aws => "AWS_",
            Provider::Google => "GOOGLE_",
            Provider::Azure => "AZURE_",
        }
    }

    /// Whether object_store knows `option` for this provider (a misspelt option would otherwise
    /// be dropped without a word).
    #[cfg(feature = "cloud")]
    fn knows(self, option: &str) -> bool {
        use std::str::FromStr;
        match self {
            Provider::Aws => object_store::aws::AmazonS3ConfigKey::from_str(option).is_ok(),
            Provider::Google => object_store::gcp::GoogleConfigKey::from_str(option).is_ok(),
            Provider::Azure => object_store::azure::AzureConfigKey::from_str(option).is_ok(),
        }
    }

    #[cfg(not(feature = "cloud"))]
    fn knows(self, _option: &str) -> bool {
        true
    }
}

/// A replica URL taken apart: the URL the store is built from (without its query) and the
/// options, from the environment first and then from the URL, which wins.
#[derive(Debug)]
struct Settings {
    provider: Provider,
    bare: Url,
    options: Vec<(String, String)>,
    storage_class: Option<String>,
}

fn settings(url: &Url, env: impl Iterator<Item = (String, String)>) -> Result<Settings, String> {
    let provider = Provider::of(url.scheme())?;
    let mut env_prefix = None;
    let mut storage_class = None;
    let mut from_url = Vec::new();
    for (key, value) in url.query_pairs() {
        let key = key.to_ascii_lowercase();
        if key == ENV_PARAMETER {
            env_prefix = Some(value.into_owned());
        } else if key == STORAGE_CLASS_PARAMETER {
            storage_class = Some(value.into_owned());
        } else if SECRET_WORDS.iter().any(|w| key.contains(w)) {
            return Err(format!(
                "{key} is a secret: give it in the environment ({}*), never in a URL",
                provider.env_prefix()
            ));
        } else if !provider.knows(&key) {
            return Err(format!("unknown option {key}"));
        } else {
            from_url.push((key, value.into_owned()));
        }
    }
    let wanted = env_prefix.as_deref().unwrap_or(provider.env_prefix());
    let mut options: Vec<(String, String)> = env
        .filter_map(|(name, value)| {
            let rest = name.strip_prefix(wanted)?;
            Some((format!("{}{rest}", provider.env_prefix()), value))
        })
        .collect();
    if options.is_empty() {
        if let Some(prefix) = &env_prefix {
            return Err(format!(
                "env={prefix}: no environment variable starts with {prefix}"
            ));
        }
    }
    options.extend(from_url);
    let mut bare = url.clone();
    bare.set_query(None);
    Ok(Settings {
        provider,
        bare,
        options,
        storage_class,
    })
}

/// The object store a cloud replica URL names, its options applied, under its path prefix.
/// Returns the store and the storage class its objects are to be written in, if the URL names
/// one.
pub fn open(
    url: &Url,
    env: impl Iterator<Item = (String, String)>,
) -> Result<(Arc<dyn ObjectStore>, Option<String>), String> {
    let Settings {
        provider,
        bare,
        options,
        storage_class,
    } = settings(url, env)?;
    let (_, prefix): (_, ObjectPath) =
        object_store::ObjectStoreScheme::parse(&bare).map_err(|e| e.to_string())?;
    let store = build(provider, &bare, options)?;
    let store = if prefix.as_ref().is_empty() {
        store
    } else {
        Arc::new(object_store::prefix::PrefixStore::new(store, prefix))
    };
    Ok((store, storage_class))
}

/// How a cloud request that failed is retried: a few times, within seconds. object_store's
/// default (ten retries over up to three minutes) would hold every ingest for about a minute
/// while one provider is down, and every read that reaches that provider first. The archive's
/// own redundancy answers instead: a write the quorum has is queued for repair on the replica
/// that failed it, and a read goes on to the next replica.
#[cfg(feature = "cloud")]
fn retry() -> object_store::RetryConfig {
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig {
            init_backoff: std::time::Duration::from_millis(100),
            max_backoff: std::time::Duration::from_secs(1),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: std::time::Duration::from_secs(10),
    }
}

/// The provider's client for `bare`, with `options` (names object_store does not know for this
/// provider, such as `AWS_PROFILE`, are left out, as object_store's own `from_env` does).
#[cfg(feature = "cloud")]
fn build(
    provider: Provider,
    bare: &Url,
    options: Vec<(String, String)>,
) -> Result<Arc<dyn ObjectStore>, String> {
    use object_store::{aws, azure, gcp};
    let known = options
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v));
    let failed = |e: object_store::Error| e.to_string();
    Ok(match provider {
        Provider::Aws => {
            let b = known.fold(aws::AmazonS3Builder::new(), |b, (k, v)| match k.parse() {
                Ok(k) => b.with_config(k, v),
                Err(_) => b,
            });
            Arc::new(
                b.with_url(bare.as_str())
                    .with_retry(retry())
                    .build()
                    .map_err(failed)?,
            )
        }
        Provider::Google => {
            let b = known.fold(gcp::GoogleCloudStorageBuilder::new(), |b, (k, v)| {
                match k.parse() {
                    Ok(k) => b.with_config(k, v),
                    Err(_) => b,
                }
            });
            Arc::new(
                b.with_url(bare.as_str())
                    .with_retry(retry())
                    .build()
                    .map_err(failed)?,
            )
        }
        Provider::Azure => {
            let b = known.fold(azure::MicrosoftAzureBuilder::new(), |b, (k, v)| {
                match k.parse() {
                    Ok(k) => b.with_config(k, v),
                    Err(_) => b,
                }
            });
            Arc::new(
                b.with_url(bare.as_str())
                    .with_retry(retry())
                    .build()
                    .map_err(failed)?,
            )
        }
    })
}

#[cfg(not(feature = "cloud"))]
fn build(
    _provider: Provider,
    _bare: &Url,
    _options: Vec<(String, String)>,
) -> Result<Arc<dyn ObjectStore>, String> {
    Err("this build has no cloud object stores (it was built without the `cloud` feature)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn options_come_from_the_url_and_the_providers_own_variables_only() {
        let s = settings(
            &url(
                "s3://bucket/pre/fix?endpoint=http://127.0.0.1:3900&region=garage&allow_http=true",
            ),
            env(&[
                ("AWS_ACCESS_KEY_ID", "GKid"),
                ("AWS_SECRET_ACCESS_KEY", "shh"),
                ("AWS_REGION", "overridden"),
                ("TOKEN", "for something else"),
                ("REGION", "elsewhere"),
                ("GOOGLE_BUCKET", "other"),
            ]),
        )
        .unwrap();
        assert_eq!(s.bare.as_str(), "s3://bucket/pre/fix");
        let got: Vec<(&str, &str)> = s
            .options
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("AWS_ACCESS_KEY_ID", "GKid"),
                ("AWS_SECRET_ACCESS_KEY", "shh"),
                ("AWS_REGION", "overridden"),
                ("endpoint", "http://127.0.0.1:3900"),
                ("region", "garage"),
                ("allow_http", "true"),
            ],
            "the URL's region comes last, so it wins"
        );
    }

    #[test]
    fn a_replica_may_read_its_credentials_under_a_prefix_of_its_own() {
        let s = settings(
            &url("s3://b?env=PROVIDER_B_&endpoint=https://b.example"),
            env(&[
                ("AWS_ACCESS_KEY_ID", "the default"),
                ("PROVIDER_B_ACCESS_KEY_ID", "GKb"),
                ("PROVIDER_B_SECRET_ACCESS_KEY", "b secret"),
            ]),
        )
        .unwrap();
        assert_eq!(
            s.options,
            [
                ("AWS_ACCESS_KEY_ID".to_string(), "GKb".to_string()),
                ("AWS_SECRET_ACCESS_KEY".into(), "b secret".into()),
                ("endpoint".into(), "https://b.example".into()),
            ]
        );
        let none = settings(&url("s3://b?env=NOBODY_"), env(&[])).unwrap_err();
        assert!(
            none.contains("no environment variable starts with NOBODY_"),
            "{none}"
        );
    }

    #[test]
    fn secrets_and_unknown_options_in_a_url_are_refused_without_echoing_them() {
        for (u, says) in [
            (
                "s3://b?secret_access_key=hunter2",
                "secret_access_key is a secret",
            ),
            (
                "s3://b?aws_session_token=hunter2",
                "aws_session_token is a secret",
            ),
            ("az://c?sas_key=hunter2", "sas_key is a secret"),
            ("s3://b?endpiont=hunter2", "unknown option endpiont"),
            ("ftp://b?x=hunter2", "unknown scheme ftp://"),
        ] {
            let e = settings(&url(u), env(&[])).unwrap_err();
            assert!(e.contains(says), "{u}: {e}");
            assert!(!e.contains("hunter2"), "{u}: {e}");
        }
    }

    #[test]
    fn a_store_opens_without_touching_the_network() {
        let keys = [("AWS_ACCESS_KEY_ID", "a"), ("AWS_SECRET_ACCESS_KEY", "b")];
        let options = "?endpoint=http://127.0.0.1:9&region=garage&allow_http=true";
        let (whole, class) = open(&url(&format!("s3://bucket{options}")), env(&keys)).unwrap();
        assert!(whole.to_string().contains("bucket"), "{whole}");
        assert_eq!(class, None);
        let (under, _) = open(&url(&format!("s3://bucket/prefix{options}")), env(&keys)).unwrap();
        assert!(under.to_string().contains("prefix"), "{under}");
    }

    #[test]
    fn a_store_may_name_the_storage_class_of_its_objects() {
        let s = settings(
            &url("s3://cold?storage_class=GLACIER_IR&region=eu-2"),
            env(&[]),
        )
        .unwrap();
        assert_eq!(s.storage_class.as_deref(), Some("GLACIER_IR"));
        // not an option of the client: the writes carry it
        assert_eq!(s.options, [("region".to_string(), "eu-2".to_string())]);
        let tier = settings(&url("az://container?storage_class=Cool"), env(&[])).unwrap();
        assert_eq!(tier.storage_class.as_deref(), Some("Cool"));
    }
}
