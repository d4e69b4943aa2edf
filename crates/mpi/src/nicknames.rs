//! Given names and the short forms people are registered under: "BOB" on one record and
//! "ROBERT" on another are one name. The table is the well-known English diminutives (the
//! pairs every name-matching list starts from); a name in no group matches only by spelling.

use std::collections::HashMap;
use std::sync::OnceLock;

/// A formal given name and its usual short forms, upper case as normalised names are.
pub const NICKNAMES: &[(&str, &[&str])] = &[
    ("ABIGAIL", &["ABBY", "ABBIE", "GAIL"]),
    ("ALBERT", &["AL", "BERT", "BERTIE"]),
    ("ALEXANDER", &["ALEX", "AL", "SANDY", "XANDER", "ALEC"]),
    ("ALEXANDRA", &["ALEX", "SANDRA", "SANDY", "LEXI"]),
    ("ALFRED", &["ALF", "ALFIE", "FRED", "AL"]),
    ("ANDREW", &["ANDY", "DREW"]),
    ("ANTHONY", &["TONY", "ANT"]),
    ("ANTONIO", &["TONY", "TONI"]),
    ("BARBARA", &["BARB", "BABS", "BARBIE"]),
    ("BENJAMIN", &["BEN", "BENNY", "BENJI"]),
    ("BEATRICE", &["BEA", "TRIXIE"]),
    ("BRADLEY", &["BRAD"]),
    ("CAROLINE", &["CARRIE", "CARO", "LINA"]),
    ("CATHERINE", &["CATHY", "CATH", "KATE", "KATIE", "CAT"]),
    ("CHARLES", &["CHARLIE", "CHUCK", "CHAS", "CHAZ"]),
    ("CHRISTINA", &["CHRIS", "TINA", "CHRISSY", "KRISTY"]),
    ("CHRISTINE", &["CHRIS", "TINA", "CHRISSY"]),
    ("CHRISTOPHER", &["CHRIS", "KIT", "TOPHER"]),
    ("CYNTHIA", &["CINDY"]),
    ("DANIEL", &["DAN", "DANNY"]),
    ("DAVID", &["DAVE", "DAVEY", "DAVY"]),
    ("DEBORAH", &["DEB", "DEBBIE", "DEBBY"]),
    ("DONALD", &["DON", "DONNY"]),
    ("DOROTHY", &["DOT", "DOTTIE", "DOLLY"]),
    ("DOUGLAS", &["DOUG"]),
    ("EDWARD", &["ED", "EDDIE", "TED", "TEDDY", "NED"]),
    ("ELEANOR", &["ELLIE", "NELL", "NELLIE", "NORA"]),
    (
        "ELIZABETH",
        &[
            "LIZ", "LIZZIE", "BETH", "BETTY", "BESS", "ELIZA", "LISA", "LIBBY", "ELSIE",
        ],
    ),
    ("EMILY", &["EMMY", "EM"]),
    ("FRANCES", &["FRAN", "FRANNIE", "FRANKIE"]),
    ("FRANCIS", &["FRANK", "FRAN"]),
    ("FREDERICK", &["FRED", "FREDDIE", "FREDDY"]),
    ("GABRIEL", &["GABE"]),
    ("GEOFFREY", &["GEOFF", "JEFF"]),
    ("GERALD", &["GERRY", "JERRY"]),
    ("GREGORY", &["GREG"]),
    ("HAROLD", &["HAL", "HARRY"]),
    ("HENRY", &["HANK", "HARRY", "HAL"]),
    ("ISABEL", &["BELLA", "IZZY", "ISSY"]),
    ("ISABELLA", &["BELLA", "IZZY", "ISSY"]),
    ("JACOB", &["JAKE"]),
    ("JAMES", &["JIM", "JIMMY", "JAMIE", "JIMMIE"]),
    ("JANET", &["JAN", "JANNIE"]),
    ("JENNIFER", &["JEN", "JENNY", "JENNI"]),
    ("JESSICA", &["JESS", "JESSIE"]),
    ("JOHN", &["JACK", "JOHNNY", "JON"]),
    ("JONATHAN", &["JON", "JONNY"]),
    ("JOSEPH", &["JOE", "JOEY", "JO"]),
    ("JOSEPHINE", &["JO", "JOSIE"]),
    ("JUDITH", &["JUDY", "JUDE"]),
    (
        "KATHERINE",
        &["KATHY", "KATE", "KATIE", "KAT", "KAY", "KIT"],
    ),
    ("KATHLEEN", &["KATHY", "KATE", "KAY"]),
    ("KENNETH", &["KEN", "KENNY"]),
    ("LAWRENCE", &["LARRY", "LAURIE"]),
    ("LEONARD", &["LEN", "LENNY", "LEO"]),
    (
        "MARGARET",
        &["MAGGIE", "MEG", "PEGGY", "MARGE", "MADGE", "GRETA", "DAISY"],
    ),
    ("MARTHA", &["MARTY", "MATTIE", "PATTY"]),
    ("MARTIN", &["MARTY"]),
    ("MARY", &["MOLLY", "POLLY", "MAMIE", "MAE"]),
    ("MATTHEW", &["MATT", "MATTY"]),
    ("MICHAEL", &["MIKE", "MICK", "MICKEY", "MIKEY"]),
    ("NATHAN", &["NATE", "NAT"]),
    ("NATHANIEL", &["NATE", "NAT", "NATHAN"]),
    ("NICHOLAS", &["NICK", "NICKY", "NICO"]),
    ("NICOLE", &["NIKKI", "NICKY"]),
    ("PAMELA", &["PAM"]),
    ("PATRICIA", &["PAT", "PATTY", "TRISH", "TRICIA", "PATSY"]),
    ("PATRICK", &["PAT", "PADDY", "RICK"]),
    ("PETER", &["PETE"]),
    ("PHILIP", &["PHIL", "PIP"]),
    ("RAYMOND", &["RAY"]),
    ("REBECCA", &["BECKY", "BECCA", "BEX"]),
    ("RICHARD", &["RICK", "RICKY", "DICK", "RICH", "RICHIE"]),
    ("ROBERT", &["BOB", "BOBBY", "ROB", "ROBBIE", "BERT"]),
    ("RONALD", &["RON", "RONNIE"]),
    ("SAMANTHA", &["SAM", "SAMMY"]),
    ("SAMUEL", &["SAM", "SAMMY"]),
    ("SARAH", &["SALLY", "SADIE"]),
    ("STEPHEN", &["STEVE", "STEVIE"]),
    ("STEVEN", &["STEVE", "STEVIE"]),
    ("SUSAN", &["SUE", "SUSIE", "SUZY"]),
    ("SUSANNAH", &["SUE", "SUSIE", "SUKIE"]),
    ("THEODORE", &["TED", "TEDDY", "THEO"]),
    ("THOMAS", &["TOM", "TOMMY"]),
    ("TIMOTHY", &["TIM", "TIMMY"]),
    ("VICTORIA", &["VICKY", "VICKIE", "TORI"]),
    ("VINCENT", &["VINCE", "VINNY"]),
    ("WALTER", &["WALT", "WALLY"]),
    ("WILLIAM", &["BILL", "BILLY", "WILL", "WILLIE", "LIAM"]),
    ("ZACHARY", &["ZACH", "ZACK"]),
];

/// Each name of the table and the groups (formal names) it belongs to; a short form such as
/// "CHRIS" belongs to several.
fn groups() -> &'static HashMap<&'static str, Vec<u16>> {
    static GROUPS: OnceLock<HashMap<&'static str, Vec<u16>>> = OnceLock::new();
    GROUPS.get_or_init(|| {
        let mut map: HashMap<&'static str, Vec<u16>> = HashMap::new();
        for (g, (formal, short)) in NICKNAMES.iter().enumerate() {
            for name in std::iter::once(formal).chain(short.iter()) {
                let groups = map.entry(name).or_default();
                if !groups.contains(&(g as u16)) {
                    groups.push(g as u16);
                }
            }
        }
        map
    })
}

/// True when two different given names are one name in the table: a formal name and its short
/// form ("ROBERT" / "BOB"), or two short forms of one formal name ("BOB" / "ROB").
pub fn same_name(a: &str, b: &str) -> bool {
    let map = groups();
    match (map.get(a), map.get(b)) {
        (Some(x), Some(y)) => x.iter().any(|g| y.contains(g)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_forms_are_one_name_with_their_formal_name_and_each_other() {
        assert!(same_name("ROBERT", "BOB"));
        assert!(same_name("BOB", "ROBERT"));
        assert!(same_name("BOB", "ROB"));
        assert!(same_name("CHRIS", "CHRISTINE"));
        assert!(same_name("CHRIS", "CHRISTOPHER"));
        assert!(!same_name("CHRISTINE", "CHRISTOPHER"));
        assert!(!same_name("ROBERT", "WILLIAM"));
        assert!(!same_name("ZEPHYR", "BOB"));
        // Every table entry is upper-case letters, as names are after normalising.
        for (formal, short) in NICKNAMES {
            for n in std::iter::once(formal).chain(short.iter()) {
                assert!(n.bytes().all(|b| b.is_ascii_uppercase()), "{n}");
            }
        }
    }
}
