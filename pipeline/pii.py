"""PII redaction: e-mail addresses, public IP addresses and phone numbers become typed placeholders.

- E-mails: one regex, tried only around each "@" (a page-wide scan with it costs ~0.8 ms a page).
- IPs: IPv4 and IPv6 candidates found from a literal "." or ":" anchor, validated by `ipaddress`; by
  default only public ones (private, loopback and reserved addresses identify no one: datatrove's default).
- Phones: Google's libphonenumber (the `phonenumbers` port, offline metadata) at Leniency.VALID. Its
  matcher costs ~2.4 ms over a whole page, so it sees only the runs of 7+ digits a cheap regex found (with
  a few characters around), then our guards drop what it is too eager on (dates, time and year ranges,
  ISBNs, decimals, version-like dotted numbers, bare digit runs without "+", numbers glued to words or
  after "order", "ISBN", "pp."). Numbers written without +CC are read in the region of the URL's
  country-code TLD, else default_region.

All three detectors run on the original text; overlaps go to the first of e-mail, IP, phone, and the text
is rebuilt once. Only the matched characters are replaced: punctuation around a match stays.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from phonenumbers import SUPPORTED_REGIONS, Leniency, PhoneNumberMatcher

KINDS = ("email", "ip", "phone")


@dataclass(frozen=True)
class PIIConfig:
    emails: bool = True
    ips: bool = True
    phones: bool = True
    public_ips_only: bool = True  # private, loopback, reserved IPs (192.168.1.1, 127.0.0.1) are kept
    default_region: str = "US"  # region of national-format phone numbers when the URL's TLD gives none
    email_placeholder: str = "<EMAIL_ADDRESS>"
    ip_placeholder: str = "<IP_ADDRESS>"
    phone_placeholder: str = "<PHONE_NUMBER>"


class PIIRedactor:
    def __init__(self, cfg: PIIConfig | None = None):
        self.cfg = cfg or PIIConfig()
        self._placeholders = {
            "email": self.cfg.email_placeholder,
            "ip": self.cfg.ip_placeholder,
            "phone": self.cfg.phone_placeholder,
        }

    def redact(self, text: str, url: str = "") -> tuple[str, dict[str, int]]:
        """The text with each e-mail, IP and phone number replaced by its placeholder, and counts by type."""
        cfg = self.cfg
        spans: list[tuple[int, int, str]] = []
        if cfg.emails and "@" in text:
            spans += [(a, b, "email") for a, b in email_spans(text)]
        if cfg.ips:
            spans += [(a, b, "ip") for a, b in ip_spans(text, cfg.public_ips_only)]
        if cfg.phones:
            region = phone_region(url, cfg.default_region)
            spans += [(a, b, "phone") for a, b in phone_spans(text, region)]
        counts = dict.fromkeys(KINDS, 0)
        if not spans:
            return text, counts
        # by start, earlier kind first (an e-mail wins over a phone-like run inside it), then the longest
        spans.sort(key=lambda s: (s[0], KINDS.index(s[2]), -s[1]))
        out, pos = [], 0
        for a, b, kind in spans:
            if a < pos:
                continue
            out += (text[pos:a], self._placeholders[kind])
            counts[kind] += 1
            pos = b
        out.append(text[pos:])
        return "".join(out), counts


# --- e-mail -----------------------------------------------------------------------------------------------

_EMAIL = re.compile(
    r"[\w%+-]+(?:\.[\w%+-]+)*@((?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+([^\W\d_]{2,24}))"
    r"(?![\w-]|\.\w|:[\w~/])"  # not a longer name, nor an scp-style git remote (git@github.com:owner/repo)
)
_LOCAL_TAIL = re.compile(r"[\w.%+-]{1,64}$")  # the local part before an "@" (at most 64 characters)
# "name@2x.png" is an image, not an address: a file extension is no TLD
_FILE_EXTENSIONS = frozenset(
    "png jpg jpeg gif svg webp avif bmp ico tif tiff heic js mjs css map html htm php json xml txt md pdf "
    "zip gz tgz mp3 mp4 mov webm woff woff2 ttf".split()
)
# RFC 2606 / 6761 names are nobody's address, and docs use them as illustrations: they are kept as written
_RESERVED_DOMAINS = ("example.com", "example.net", "example.org")
_RESERVED_TLDS = frozenset({"example", "test", "invalid", "localhost", "local"})


def email_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each e-mail address, reserved example domains and image names left out."""
    spans: list[tuple[int, int]] = []
    at, end = text.find("@"), 0
    while at >= 0:
        # anchored on each "@": the local part is found backwards, then one match from its start
        local = _LOCAL_TAIL.search(text, max(end, at - 64), at) if text[at + 1 : at + 2].isalnum() else None
        a = local.start() if local else at
        while a < at and text[a] == ".":
            a += 1
        m = _EMAIL.match(text, a, at + 256) if a < at and not (a and _is_local(text[a - 1])) else None
        if m:
            domain, tld = m.group(1).lower(), m.group(2).lower()
            reserved = tld in _RESERVED_TLDS or any(
                domain == d or domain.endswith("." + d) for d in _RESERVED_DOMAINS
            )
            if tld not in _FILE_EXTENSIONS and not reserved:
                spans.append(m.span())
            end = m.end()
        end = max(end, at + 1)  # no local part holds an "@": "a@a@a@..." stays linear
        at = text.find("@", end)
    return spans


def _is_local(ch: str) -> bool:
    return ch.isalnum() or ch in "._%+-"


# --- IP addresses -----------------------------------------------------------------------------------------

_IPV4_TAIL = re.compile(r"\.\d{1,3}\.\d{1,3}\.\d{1,3}")  # literal first character: a fast scan
_IPV4 = re.compile(r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)")
_IPV6_ANCHOR = re.compile(r":[0-9A-Fa-f]{0,4}:")
_HEX_COLON = "0123456789abcdefABCDEF:"
# a dotted or dashed number right after one of these words is a version, section, ISBN, order number...
_NOT_PII_BEFORE = re.compile(
    r"(?:\b(?:v|ver|version|versión|versione|release|build|rev|revision|python|java|node|firmware|kernel|"
    r"sdk|api|section|sec|chapter|ch|clause|article|art|table|tab|figure|fig|step|rule|item|oid|rfc|isbn|"
    r"isbn-1[03]|issn|doi|order|invoice|ref|reference|sku|serial|tracking|iban|bic|account|acct|case|"
    r"ticket|patent|model|part|id|pmid|arxiv|page|pages|seite|seiten|bestellung|bestellnummer|rechnung|"
    r"rechnungsnummer|kundennummer|commande|facture|pedido|factura|abschnitt|kapitel)\.?|§|"
    r"\bpp?\.)\s*(?:(?:no|nr|num|number|n°|nº|#|id)\.?\s*)?[:#]?\s*$",
    re.I,
)


def _public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    # is_global alone lets reserved IPv6 space ("a::b", C++-like) and multicast through on Python 3.11
    return ip.is_global and not (ip.is_reserved or ip.is_multicast or ip.is_unspecified)


def ip_spans(text: str, public_only: bool = True) -> list[tuple[int, int]]:
    """(start, end) of each IPv4 and IPv6 address (only public ones when public_only)."""
    spans: list[tuple[int, int]] = []
    n = len(text)
    for m in _IPV4_TAIL.finditer(text):
        a = m.start()
        while a > 0 and m.start() - a < 3 and text[a - 1] in "0123456789":
            a -= 1
        b = m.end()
        ip = _IPV4.fullmatch(text, a, b)
        if ip is None or a == m.start():
            continue
        # glued to a word or to more dotted digits: "v1.2.3.4", "1.2.3.4.5" are versions and OIDs
        prev, nxt = text[a - 1 : a], text[b : b + 1]
        if prev.isalnum() or prev in ("_", ".") or nxt.isalnum() or nxt == "_":
            continue
        if nxt == "." and text[b + 1 : b + 2].isdigit():
            continue
        octets = ip.group().split(".")
        # all single digits ("1.2.3.4") is a version far more often than a host; the famous ones (1.1.1.1,
        # 8.8.8.8, 9.9.9.9) are public resolvers, not anyone's address. x.y.z.0 names a network, not a host.
        if all(len(o) == 1 for o in octets) or octets[3] == "0":
            continue
        if _NOT_PII_BEFORE.search(text, max(0, a - 40), a):
            continue
        if not public_only or _public(ipaddress.IPv4Address(ip.group())):
            spans.append((a, b))
    end = 0
    for m in _IPV6_ANCHOR.finditer(text):
        if m.start() < end:
            continue
        head = text[max(0, m.start() - 40) : m.start()]
        a = m.start() - (len(head) - len(head.rstrip(_HEX_COLON)))
        tail = text[m.start() : m.start() + 46]
        b = m.start() + len(tail) - len(tail.lstrip(_HEX_COLON + "."))
        b -= len(text[a:b]) - len(text[a:b].rstrip("."))  # a full stop after the address
        if text[b - 1] == ":" and text[b - 2] != ":":
            b -= 1  # "2606:4700::1111: down" (a trailing "::" belongs to the address)
        end = b
        token = text[a:b]
        if token.count(":") < 2 or token == "::" or (a and (text[a - 1].isalnum() or text[a - 1] in "_.")):
            continue
        if b < n and (text[b].isalnum() or text[b] == "_"):
            continue
        try:
            ip6 = ipaddress.IPv6Address(token)
        except ValueError:
            continue
        if not public_only or _public(ip6):
            spans.append((a, b))
    return spans


# --- phone numbers ----------------------------------------------------------------------------------------

# at least 7 digits, each group apart by at most 3 separators (spaces, dots, dashes, slashes, brackets)
_PHONE_RUN = re.compile(r"[0-9](?:[ \u00a0.\-/()\u2010-\u2015]{0,3}[0-9]){6,}")
# characters of text the matcher sees per page, ~1,000 numbers: bounds the time on pages of numeric tables
# (dense digits cost it ~25 us a character); the 1,344 real pages of the bench need at most 1,806
_MATCHER_BUDGET = 32_000
_WINDOW = 8  # context the matcher sees around a run: its own checks look at the characters beside a match
_DATE = r"(?:\d\d?[./-]\d\d?[./-](?:\d{4}|\d\d)|\d{4}[./-]\d\d?[./-]\d\d?|\d\d?/\d{4}|\d{4}/\d\d?)"
_TIME = r"(?:[01]?\d|2[0-3])[.:h][0-5]\d"
_NOT_A_PHONE = re.compile(
    rf"(?:{_DATE}|{_TIME}|(?:19|20)\d\d)(?:\s*[-–—/]\s*(?:{_DATE}|{_TIME}|(?:19|20)\d\d))?"  # dates, ranges
    r"|(?:19|20)\d\d\s?[-–/].*"  # year first: "2024-000123" is an invoice, "2024-01-15 ..." a date
    r"|(?:97[89]-?)?\d{1,5}(?:-\d{1,7}){2}-[\dX]"  # ISBN-10/13 with hyphens: 0-306-40615-2
    r"|97[89]\d{10}"
    r"|(?:0|[1-9]\d{0,2})[.,]\d+"  # a decimal: 0.123456789, 40.712776
    r"|\d{1,3}(?:[.,]\d{3})+"  # thousands: 1.299.999
    r"|\d+(?:\.\d+)*\.\d(?:\.\d+)*"  # dotted with a one-digit group: 10.0.19041.1
    r"|\d{1,3}(?:\.\d{1,3}){3}"  # an IPv4 address, public or not
    r"|\d+"  # bare digits with no + : product ids, timestamps, ASINs
)
_CC_BEFORE = re.compile(r"(?<![\w.,+\-])\+?(\d{1,3})[ .\-]?$")
_CURRENCY = re.compile(r"[$€£¥₹₽¢]|\b(?:EUR|USD|GBP|CHF|JPY|INR|AUD|CAD|Rs)\b")
# vanity ccTLDs: sites there are rarely in that country (.io, .ai, .co, .me, .tv ...)
_VANITY_TLDS = frozenset("ac ai am cc co fm gg gl im io la ly me ms nu sh so tk to tv vc ws".split())


@lru_cache(maxsize=4096)
def _host_region(host: str, default: str) -> str:
    tld = host.rstrip(".").rsplit(".", 1)[-1].lower()
    if tld == "uk":
        return "GB"
    if tld not in _VANITY_TLDS and tld.upper() in SUPPORTED_REGIONS:
        return tld.upper()
    return default


def phone_region(url: str, default: str = "US") -> str:
    """The region for national-format numbers: the URL's country-code TLD (.co.uk -> GB), else default."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        host = ""
    return _host_region(host, default) if host else default


def phone_spans(text: str, region: str = "US") -> list[tuple[int, int]]:
    """(start, end) of each phone number libphonenumber finds valid, national formats read in region."""
    spans: list[tuple[int, int]] = []
    budget = _MATCHER_BUDGET
    for run in _PHONE_RUN.finditer(text):
        s, e = run.span()
        if text[s - 1 : s] != "+" and _NOT_A_PHONE.fullmatch(run.group()):
            continue  # the whole run is a date, a version, bare digits...: spare the matcher (~60 us a call)
        if e - s + 2 * _WINDOW > budget:
            continue  # too long for what is left (one huge run must not end the search)
        budget -= e - s + 2 * _WINDOW
        # the whole run at once: on a piece of a list of numbers, the matcher misreads the cut ends
        spans += _match_run(text, s, e, region)
    return spans


def _match_run(text: str, s: int, e: int, region: str) -> list[tuple[int, int]]:
    spans = []
    w0 = max(0, s - _WINDOW)
    intl = text[s : s + 2] == "00" and text[s + 2 : s + 3].isdigit()
    if intl:
        # "0049 30 901820": 00 is the international prefix nearly everywhere (the US dials 011), so the
        # matcher reads it as "+49 ..." in any region; " +" keeps every offset in place
        window = text[w0:s] + " +" + text[s + 2 : e + _WINDOW]
    else:
        window = text[w0 : e + _WINDOW]
    for m in PhoneNumberMatcher(window, region, leniency=Leniency.VALID):
        raw = m.raw_string  # an inner match ("2203 / 030 9018 2204") may come with a space around it
        a = w0 + m.start + len(raw) - len(raw.lstrip())
        b = w0 + m.end - (len(raw) - len(raw.rstrip()))
        if intl and a == s + 1:
            a = s  # the " +" replacement: the redaction starts at the "00" itself
        elif text[a] == "(" and (cc := _CC_BEFORE.search(text, max(0, a - 6), a)):
            if cc.group(1) == str(m.number.country_code):
                a = cc.start()  # "1 (888) 768 6861 (24/7)": the matcher leaves the "1 " behind
        # inside this run (a "+" or "(" just before it included): the window's edges cut other numbers
        if a < s - 2 or b > e + 1 or _guarded(text, a, b):
            continue
        spans.append((a, b))
    return spans


def _guarded(text: str, a: int, b: int) -> bool:
    """True when the matched number is something else: glued to a word, a date, an ISBN, a price..."""
    # beyond either end of the text counts as a space ("" would be "in" every string)
    prev, prev2 = text[a - 1] if a > 0 else " ", text[a - 2] if a > 1 else " "
    nxt, nxt2 = text[b : b + 1] or " ", text[b + 1 : b + 2] or " "
    if prev.isalnum() or prev in ("#", "@", "=", "&", "_", "\\") or (prev in "-./" and prev2.isalnum()):
        return True  # "1aaa-123-45-678-910.ngrok-free.app", "id=5551234567", "#555-0143"
    if nxt.isalnum() or nxt in ("_", "@") or (nxt in "-./" and nxt2.isalnum()):
        return True
    number = text[a:b]
    if "+" not in number and _NOT_A_PHONE.fullmatch(number.strip("()")):
        return True
    if number.count("/") > 1:
        return True  # "600/800/1000", "01/15/2024"
    if _CURRENCY.search(text, max(0, a - 4), a) or _CURRENCY.match(text[b : b + 5].lstrip()):
        return True
    return bool(_NOT_PII_BEFORE.search(text, max(0, a - 40), a))
