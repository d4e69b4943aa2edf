"""Generates a large `strata mpi link` input with known duplicates, for the speed benchmark.

  mpi_gen.py N DIR   writes DIR/records.csv (N records) and DIR/truth.json

People get names drawn with a long-tailed (Zipf) frequency from generated vocabularies (a few
names very common, most rare, as in a real population), a birth date, a sex, an address and
often a phone. About 40 % of the records are further records of an earlier person from another
issuer (hospital), with the errors registration makes: typos in names, day and month swapped,
one wrong digit in the date, family and given names swapped, a married name, a move, missing
fields. Standard library only; the same seed gives the same file.
"""

import csv
import json
import random
import sys
from pathlib import Path

COLUMNS = [
    "record_id", "issuer", "patient_id", "family_name", "given_name", "middle_name",
    "birth_date", "sex", "street", "city", "postcode", "phone",
]
ONSETS = ["b", "br", "c", "ch", "d", "f", "g", "gr", "h", "j", "k", "l", "m", "n", "p", "r",
          "s", "sh", "st", "t", "th", "v", "w", "z", ""]
VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "ou", "y"]
CODAS = ["", "n", "r", "s", "l", "m", "t", "ck", "nd", "rt", "son", "ley", "man", "er", "ton"]


def word(rng, syllables):
    return "".join(rng.choice(ONSETS) + rng.choice(VOWELS) for _ in range(syllables)) + rng.choice(CODAS)


def vocabulary(rng, n, lo, hi):
    words = set()
    while len(words) < n:
        w = word(rng, rng.randint(lo, hi))
        if len(w) >= 3:
            words.add(w.capitalize())
    words = sorted(words)
    rng.shuffle(words)
    return words, [1.0 / (k + 1) ** 0.9 for k in range(n)]


def typo(rng, s):
    if len(s) < 2:
        return s
    i = rng.randrange(len(s))
    kind = rng.random()
    if kind < 0.3:
        return s[:i] + s[i + 1:]
    if kind < 0.6 and i + 1 < len(s):
        return s[:i] + s[i + 1] + s[i] + s[i + 2:]
    return s[:i] + rng.choice("abcdefghijklmnopqrstuvwxyz") + s[i + 1:]


def main(n, out):
    rng = random.Random(21)
    families, fw = vocabulary(rng, 40000, 1, 3)
    givens, gw = vocabulary(rng, 3000, 1, 2)
    streets, _ = vocabulary(rng, 5000, 1, 3)
    cities = [(c, f"{rng.randint(10000, 99999)}") for c in vocabulary(rng, 800, 1, 3)[0]]
    issuers = [f"HOSP{k}" for k in range(1, 7)]
    people, rows, truth = [], [], {}
    family_draw = rng.choices(families, fw, k=n)
    given_draw = rng.choices(givens, gw, k=2 * n)
    next_pid = {i: 100000 for i in issuers}

    def address():
        city, postcode = rng.choice(cities)
        return (f"{rng.randint(1, 999)} {rng.choice(streets)} "
                f"{rng.choice(['St', 'Street', 'Ave', 'Rd', 'Lane', 'Drive'])}", city, postcode)

    for k in range(n):
        if people and rng.random() < 0.4:
            person = rng.randrange(len(people))
            p = dict(people[person])
            p["issuer"] = rng.choice(issuers)
            r = rng.random
            if r() < 0.15:
                p["family"] = typo(rng, p["family"])
            if r() < 0.10:
                p["given"] = typo(rng, p["given"])
            if p["sex"] == "F" and r() < 0.03:
                p["family"] = family_draw[rng.randrange(n)]
            if r() < 0.02:
                p["family"], p["given"] = p["given"], p["family"]
            y, m, d = p["dob"][:4], p["dob"][4:6], p["dob"][6:]
            if r() < 0.03 and int(d) <= 12:
                p["dob"] = y + d + m
            elif r() < 0.03:
                i = rng.randrange(8)
                p["dob"] = p["dob"][:i] + str(rng.randrange(10)) + p["dob"][i + 1:]
            if r() < 0.15:
                p["street"], p["city"], p["postcode"] = address()
            for field, missing in (("middle", 0.4), ("phone", 0.3), ("street", 0.1),
                                   ("sex", 0.02), ("dob", 0.01), ("given", 0.01)):
                if r() < missing:
                    p[field] = ""
        else:
            person = len(people)
            sex = rng.choice("MF")
            street, city, postcode = address()
            p = {
                "issuer": rng.choice(issuers),
                "family": family_draw[k],
                "given": given_draw[2 * k],
                "middle": given_draw[2 * k + 1] if rng.random() < 0.5 else "",
                "dob": f"{rng.randint(1930, 2023)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}",
                "sex": sex,
                "street": street,
                "city": city,
                "postcode": postcode,
                "phone": f"{rng.randint(200, 999)}{rng.randint(2000000, 9999999)}"
                if rng.random() < 0.8 else "",
            }
            people.append(p)
        next_pid[p["issuer"]] += 1
        record_id = str(k + 1)
        truth[record_id] = person
        rows.append([record_id, p["issuer"], str(next_pid[p["issuer"]]), p["family"], p["given"],
                     p["middle"], p["dob"], p["sex"], p["street"], p["city"], p["postcode"],
                     p["phone"]])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "records.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        w.writerows(rows)
    (out / "truth.json").write_text(json.dumps(truth))
    print(f"# generated {n} records of {len(people)} people in {out / 'records.csv'}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(int(sys.argv[1]), sys.argv[2])
