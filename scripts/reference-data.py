#!/usr/bin/env python3
"""Fetches the published data sets the measurement reference tests read, into a directory
(default target/reference-data), and checks each download against its SHA-256:

- `cdnow_customers_summary_with_transactions.csv` and `CDNOW_sample.txt`, shipped in the
  `lifetimes` 0.11.3 wheel (Fader, Hardie & Lee's CDNOW cohort);
- `Data.csv`, the 10,000-path data set shipped in the `channelattribution` 2.2.5 source
  distribution.

Both come from the Python package index pip is configured with. The sdist is fetched from
the index's file listing rather than with `pip download`, which would build it. Prints the
directory; exits non-zero on any failure.
"""

import hashlib
import html.parser
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zipfile

LIFETIMES = ("lifetimes", "0.11.3", "Lifetimes-0.11.3-py3-none-any.whl",
             "261e3dc89977c2b60767ca6728aaa29d429de0c814635070a749c36555895da8")
CHANNELATTRIBUTION = ("channelattribution", "2.2.5", "channelattribution-2.2.5.tar.gz",
                      "01c597dabdcd436e358a6c05a191151db2eaabf7c12a6875fb3a087dcf609448")
WANTED = ["cdnow_customers_summary_with_transactions.csv", "CDNOW_sample.txt", "Data.csv"]


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def check(name, data, expected):
    got = sha256(data)
    if got != expected:
        sys.exit(f"{name}: SHA-256 {got}, expected {expected}")


def index_url():
    """The simple index pip uses: PIP_INDEX_URL, pip's configuration, or pip's default."""
    env = os.environ.get("PIP_INDEX_URL")
    if env:
        return env.rstrip("/")
    try:
        out = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.index-url"],
                             capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().rstrip("/")
    except OSError:
        pass
    from pip._internal.models.index import PyPI
    return PyPI.simple_url.rstrip("/")


class Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.links.append(href)


def fetch(url):
    with urllib.request.urlopen(url, timeout=120) as r:
        return r.read()


def from_listing(project, filename):
    base = f"{index_url()}/{project}/"
    parser = Links()
    parser.feed(fetch(base).decode("utf-8"))
    for href in parser.links:
        if urllib.parse.urlparse(href).path.rsplit("/", 1)[-1] == filename:
            return fetch(urllib.parse.urljoin(base, href))
    sys.exit(f"{filename} is not in the index's listing of {project}")


def wheel(project, version, filename):
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        f"{project}=={version}", "-d", tmp], check=True)
        path = os.path.join(tmp, filename)
        if not os.path.exists(path):
            sys.exit(f"pip did not download {filename} (got {os.listdir(tmp)})")
        with open(path, "rb") as f:
            return f.read()


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join("target", "reference-data")
    os.makedirs(out, exist_ok=True)
    if all(os.path.exists(os.path.join(out, n)) for n in WANTED):
        print(out)
        return
    project, version, filename, digest = LIFETIMES
    data = wheel(project, version, filename)
    check(filename, data, digest)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for name in ("cdnow_customers_summary_with_transactions.csv", "CDNOW_sample.txt"):
            with open(os.path.join(out, name), "wb") as f:
                f.write(z.read(f"lifetimes/datasets/{name}"))
    project, version, filename, digest = CHANNELATTRIBUTION
    data = from_listing(project, filename)
    check(filename, data, digest)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as t:
        member = next((m for m in t.getmembers() if m.name.endswith("/cypack/data/Data.csv")), None)
        if member is None:
            sys.exit(f"{filename} holds no cypack/data/Data.csv")
        with open(os.path.join(out, "Data.csv"), "wb") as f:
            f.write(t.extractfile(member).read())
    print(out)


if __name__ == "__main__":
    main()
