#!/usr/bin/env python3
"""Fails when a log file holds personal data.

    no-personal-data-in-logs.py --store PROJECTIONS_SQLITE LOG [LOG ...]
        the store's customers' emails and phones: every identifier of those types in the
        embedded store's projections (as normalised), and the `email` and `phone` traits as
        customers typed them;

    no-personal-data-in-logs.py --any [--allow ADDRESS_OR_NUMBER ...] LOG [LOG ...]
        any email address and any phone number (but the allowed ones: senders, not customers)
        in international form (`+` and 8 to 17 digits, with spaces, dots, dashes or
        parentheses between them), whoever it belongs to; each line is read URL-decoded too.
        Every file must hold the canary line the test harness writes first
        (canary@personal-data.invalid, +33600000009): it proves the search reads what the
        harness wrote, and is not a hit itself.
"""
import argparse
import re
import sqlite3
import sys
import urllib.parse

CANARY_EMAIL = "canary@personal-data.invalid"
CANARY_PHONE = "33600000009"
# An address, not the user part of a URL (`postgres://parcours@db.internal`).
EMAIL_RE = re.compile(r"(?<![\w.+-])(?<!://)[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def digits(s: str) -> str:
    return "".join(c for c in s if c.isdigit())


def store_values(path: str):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    values = {
        v
        for (v,) in db.execute(
            "SELECT id_value FROM identifiers WHERE id_type IN ('email', 'phone')"
        )
    }
    for (v,) in db.execute(
        "SELECT json_extract(doc, '$.traits.' || t || '.value') FROM profiles,"
        " (SELECT 'email' AS t UNION SELECT 'phone')"
    ):
        if isinstance(v, str):
            values.add(v)
    emails = {v.strip().lower() for v in values if "@" in v}
    phones = {digits(v) for v in values if "@" not in v and len(digits(v)) >= 8}
    return emails, phones


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--store", help="the embedded store's projections file")
    mode.add_argument("--any", action="store_true", help="any email or E.164 phone")
    ap.add_argument("--allow", action="append", default=[], help="an address that is not personal")
    ap.add_argument("logs", nargs="+")
    args = ap.parse_args()

    if args.store:
        emails, phones = store_values(args.store)
        if len(emails) < 10 or len(phones) < 10:
            print(f"only {len(emails)} emails and {len(phones)} phones in the store: not a real check",
                  file=sys.stderr)
            return 1
        phone_re = re.compile(r"\+?\d[\d ().-]{6,}\d")
        is_email = lambda m: m.lower() in emails
        is_phone = lambda m: digits(m) in phones
        what = f"{len(emails)} emails, {len(phones)} phones"
    else:
        allowed = {a.lower() for a in args.allow if "@" in a} | {CANARY_EMAIL}
        allowed_phones = {digits(a) for a in args.allow if "@" not in a} | {CANARY_PHONE}
        # `+` and digits, with the separators people write (`+33 6 12 34 56 78`,
        # `+1-415-555-0100`, `+44 (0)20 …`).
        phone_re = re.compile(r"\+\d(?:[ .()-]{0,2}\d){7,16}")
        is_email = lambda m: m.lower() not in allowed

        def is_phone(m: str) -> bool:
            d = digits(m)
            # An allowed number followed by other figures (`from=+33600000000 2 items`).
            for a in allowed_phones:
                if d.startswith(a):
                    d = d[len(a):]
            return 8 <= len(d) <= 17

        what = "any email or phone"

    found = 0
    lines = 0
    for path in args.logs:
        canary = False
        with open(path, encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                lines += 1
                # As a URL or a form would carry it too (`ann%40example.com`, `%2B33…`).
                line = urllib.parse.unquote(line)
                emails_here = EMAIL_RE.findall(line)
                phones_here = phone_re.findall(line)
                if CANARY_EMAIL in emails_here and any(digits(p) == CANARY_PHONE for p in phones_here):
                    canary = True
                hits = [m for m in emails_here if is_email(m)]
                hits += [m for m in phones_here if is_phone(m)]
                for h in hits:
                    found += 1
                    if found <= 20:
                        print(f"{path}:{n}: {h!r} in: {line.strip()[:300]}", file=sys.stderr)
        if args.any and not canary:
            print(f"{path}: no canary line: the search did not read what the harness wrote",
                  file=sys.stderr)
            return 1
    if lines == 0:
        print("the logs are empty: nothing was checked", file=sys.stderr)
        return 1
    print(
        f"no-personal-data-in-logs: {what}, {len(args.logs)} files, {lines} log lines, {found} hits",
        file=sys.stderr,
    )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
