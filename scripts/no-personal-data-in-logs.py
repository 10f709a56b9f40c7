#!/usr/bin/env python3
"""Fails when a log file holds one of the store's customers' emails or phones.

    no-personal-data-in-logs.py PROJECTIONS_SQLITE LOG [LOG ...]

The emails and phones are every identifier of those types in the embedded store's projections
(as normalised), and the `email` and `phone` traits as customers typed them.
"""
import re
import sqlite3
import sys


def digits(s: str) -> str:
    return "".join(c for c in s if c.isdigit())


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
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
    if len(emails) < 10 or len(phones) < 10:
        print(f"only {len(emails)} emails and {len(phones)} phones in the store: not a real check",
              file=sys.stderr)
        return 1
    email_re = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
    phone_re = re.compile(r"\+?\d[\d ().-]{6,}\d")
    found = 0
    lines = 0
    for path in sys.argv[2:]:
        with open(path, encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                lines += 1
                hits = [m for m in email_re.findall(line) if m.lower() in emails]
                hits += [m for m in phone_re.findall(line) if digits(m) in phones]
                for h in hits:
                    found += 1
                    if found <= 20:
                        print(f"{path}:{n}: {h!r} in: {line.strip()[:300]}", file=sys.stderr)
    if lines == 0:
        print("the logs are empty: nothing was checked", file=sys.stderr)
        return 1
    print(
        f"no-personal-data-in-logs: {len(emails)} emails, {len(phones)} phones, {lines} log lines, {found} hits",
        file=sys.stderr,
    )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
