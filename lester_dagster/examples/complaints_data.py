"""Seeded synthetic data for the customer-complaints running example.

The example pipeline of "Messy Code Makes Managing ML Pipelines Difficult? Just Let LLMs
Rewrite the Code!" reads two sources, ``customers`` and ``mails``, keeps customers from
:data:`KEPT_COUNTRIES`, keeps mails dated on/after :data:`START_DATE` whose text mentions
:data:`TOPIC_PATTERN`, joins mails to customers on ``email``, lower-cases subject and text,
scores the text with VADER and labels negative mails of premium customers.

:func:`generate_frames` builds both sources fully vectorised: every string column is taken
from a small pool of fragments by integer codes and concatenated with Arrow-backed string
operations, so a million customers (three million mails) take a few seconds.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "ALL_COUNTRIES",
    "BANKS",
    "KEPT_COUNTRIES",
    "LEVELS",
    "START_DATE",
    "TOPIC_PATTERN",
    "generate_frames",
    "write_complaints",
]

KEPT_COUNTRIES: tuple[str, ...] = ("DE", "FR", "NL")
ALL_COUNTRIES: tuple[str, ...] = (*KEPT_COUNTRIES, "US", "UK", "ES")
START_DATE: str = "2022-01-01"
TOPIC_PATTERN: str = "complaint|bank account"
BANKS: tuple[str, ...] = (
    "Deutsche Bank", "Commerzbank", "ING", "BNP Paribas", "ABN AMRO",
    "Rabobank", "Santander", "HSBC", "Barclays", "Chase",
)  # fmt: skip
LEVELS: tuple[str, ...] = ("basic", "premium")

_PREMIUM_SHARE = 0.30
_UNMATCHED_SHARE = 0.05
_TOPIC_SHARE = 0.25
_LEAK_SHARE = 0.01
_FIRST_DAY, _END_DAY = np.datetime64("2020-01-01"), np.datetime64("2025-01-01")

_COMPLAINT = ("complaint", "Complaint", "COMPLAINT")
_ACCOUNT = ("bank account", "Bank Account", "BANK ACCOUNT")
_TOPIC_TEMPLATES = (
    "I want to file a {c} about the fees on my {a}.",
    "This is a formal {c} regarding my last transfer.",
    "Why was my {a} blocked without any notice?",
    "I would like to close my {a} by the end of the month.",
    "Please forward my {c} to the manager of your branch.",
    "My {a} shows a charge I never made.",
)
_TOPIC_OPENERS = tuple(
    template.format(c=c, a=a)
    for template in _TOPIC_TEMPLATES
    for c, a in zip(_COMPLAINT, _ACCOUNT, strict=True)
)
_OTHER_OPENERS = (
    "I have a question about my credit card.",
    "Could you send me the new terms and conditions?",
    "I moved to a new address last month.",
    "Please update my phone number in your records.",
    "I received your letter from last week.",
    "My new card arrived today.",
    "When does the branch in the city centre open on Saturdays?",
    "I am writing about my savings plan.",
    "HELLO, this is about my online banking login.",
    "Can I increase the limit of my debit card?",
)
_NEGATIVE = (
    " The service was terrible.",
    " I am very angry.",
    " I am deeply disappointed with your bank.",
    " This is the worst experience I have ever had.",
    " Your staff was rude and unhelpful.",
    " I am frustrated and upset.",
    " This is UNACCEPTABLE!",
    " Nobody answered my calls, which is awful.",
    " I hate waiting for weeks without an answer.",
    " I am ANGRY and will tell all my friends.",
)
_POSITIVE = (
    " Thank you for your help!",
    " Your staff was great.",
    " I am very happy with the service.",
    " Everything works perfectly, thanks!",
    " You did an excellent job.",
    " I love the new app.",
    " The advisor was friendly and helpful.",
    " THANK YOU, you are wonderful!",
)
_OTHER_SUBJECTS = (
    "Question", "Thanks!", "Hello", "Re: your letter", "Change of address",
    "Feedback", "new card", "Online Banking Login", "Quick question", "URGENT",
)  # fmt: skip
_TOPIC_SUBJECTS = (
    "Complaint about my Bank Account", "complaint", "Bank account problem",
    "Formal Complaint", "Re: my bank account", "COMPLAINT!!!",
)  # fmt: skip

# Sentiment tones: topic mails lean negative, the others lean positive.
_NEG, _MIXED, _POS = 0, 1, 2
_TONE_GIVEN_TOPIC = (0.60, 0.25, 0.15)
_TONE_GIVEN_OTHER = (0.15, 0.25, 0.60)
_EXTRA_SENTENCES = (0.20, 0.40, 0.40)  # probability of 0, 1, 2 sentences after the opener


def _check_int(name: str, value: object, minimum: int, expected: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be {expected}, got {value!r}")


def _take(pool: Sequence[str] | pd.Series[str], codes: np.ndarray) -> pd.Series[str]:
    """The strings ``pool[codes]`` as a ``str`` Series (an Arrow ``take``, no Python loop)."""
    return pd.Series(pd.array(list(pool), dtype="str").take(codes))


def _numbered(prefix: str, numbers: np.ndarray, width: int, suffix: str) -> pd.Series[str]:
    padded = pd.Series(numbers, dtype="int64").astype("str").str.zfill(width)
    return prefix + padded + suffix


def _fake_ibans(rng: np.random.Generator, count: int) -> pd.Series[str]:
    """Made-up, IBAN-looking secrets such as ``IBAN DE12 3456 7890 1234 5678 90``."""
    parts = [_numbered(" ", rng.integers(0, 10**4, count), 4, "") for _ in range(4)]
    tail = _numbered(" ", rng.integers(0, 100, count), 2, "")
    iban = _numbered("IBAN DE", rng.integers(10, 100, count), 2, "")
    for part in [*parts, tail]:
        iban = iban + part
    return iban


def _validate(customers: int, mails_per_customer: int, seed: int) -> None:
    _check_int("customers", customers, 1, "a positive integer")
    _check_int("mails_per_customer", mails_per_customer, 1, "an integer >= 1")
    _check_int("seed", seed, 0, "a non-negative integer")


def generate_frames(
    customers: int, *, mails_per_customer: int = 3, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Generate the ``customers`` and ``mails`` frames; equal arguments give equal frames.

    ``customers`` has ``customer_id`` (1..N), unique ``email``, ``bank``, ``country`` (half of
    them in :data:`KEPT_COUNTRIES`) and ``level`` (about 30% premium). ``mails`` has
    ``customers * mails_per_customer`` rows with ``mail_id`` (1..M), ``email`` (about 5% from
    unknown senders), ISO ``date`` in 2020..2024, ``subject`` (about 1% leak a fake IBAN) and
    ``text`` (about 25% mention :data:`TOPIC_PATTERN`, positive and negative tones vary).
    """
    _validate(customers, mails_per_customer, seed)
    rng = np.random.default_rng(seed)
    width = max(6, len(str(customers)))

    customer_ids = np.arange(1, customers + 1, dtype=np.int64)
    emails = _numbered("c", customer_ids, width, "@example.org")
    customer_frame = pd.DataFrame(
        {
            "customer_id": customer_ids,
            "email": emails,
            "bank": _take(BANKS, rng.integers(0, len(BANKS), customers)),
            "country": _take(ALL_COUNTRIES, rng.integers(0, len(ALL_COUNTRIES), customers)),
            "level": _take(LEVELS, (rng.random(customers) < _PREMIUM_SHARE).astype(np.intp)),
        }
    )

    mails = customers * mails_per_customer
    # Senders: a random customer, or (for ~5%) an address that matches no customer.
    sender_codes = rng.integers(0, customers, mails)
    unknown = np.flatnonzero(rng.random(mails) < _UNMATCHED_SHARE)
    sender_codes[unknown] = customers + np.arange(unknown.size)
    unknown_emails = _numbered("u", rng.integers(1, 10**width, unknown.size), width, "@example.net")
    sender_pool = pd.concat([emails, unknown_emails], ignore_index=True)

    days = np.arange(_FIRST_DAY, _END_DAY)
    date_codes = rng.integers(0, days.size, mails)

    topic = rng.random(mails) < _TOPIC_SHARE
    tone = np.where(
        topic,
        rng.choice(3, size=mails, p=_TONE_GIVEN_TOPIC),
        rng.choice(3, size=mails, p=_TONE_GIVEN_OTHER),
    )
    extra = rng.choice(3, size=mails, p=_EXTRA_SENTENCES)

    # Opener: a topic sentence for topic mails, a neutral one otherwise.
    opener_codes = np.where(
        topic,
        rng.integers(0, len(_TOPIC_OPENERS), mails),
        len(_TOPIC_OPENERS) + rng.integers(0, len(_OTHER_OPENERS), mails),
    )
    # Sentence pool: "" (no sentence), the negative ones, then the positive ones.
    pos_offset = 1 + len(_NEGATIVE)
    # Negative mails get negative sentences, positive ones positive, mixed ones one of each.
    second = np.where(
        tone == _POS,
        pos_offset + rng.integers(0, len(_POSITIVE), mails),
        1 + rng.integers(0, len(_NEGATIVE), mails),
    )
    third = np.where(
        tone != _NEG,
        pos_offset + rng.integers(0, len(_POSITIVE), mails),
        1 + rng.integers(0, len(_NEGATIVE), mails),
    )
    sentences = ("", *_NEGATIVE, *_POSITIVE)
    text = (
        _take(_TOPIC_OPENERS + _OTHER_OPENERS, opener_codes)
        + _take(sentences, np.where(extra >= 1, second, 0))
        + _take(sentences, np.where(extra >= 2, third, 0))
    )

    # Subjects: mostly topical for topic mails; ~1% get a leaked fake IBAN appended.
    topical_subject = rng.random(mails) < np.where(topic, 0.8, 0.05)
    subject_codes = np.where(
        topical_subject,
        len(_OTHER_SUBJECTS) + rng.integers(0, len(_TOPIC_SUBJECTS), mails),
        rng.integers(0, len(_OTHER_SUBJECTS), mails),
    )
    subject_pool = _OTHER_SUBJECTS + _TOPIC_SUBJECTS
    leaked = np.flatnonzero(rng.random(mails) < _LEAK_SHARE)
    leaked_subjects = (
        _take(subject_pool, subject_codes[leaked]) + " (" + _fake_ibans(rng, leaked.size) + ")"
    )
    subject_codes[leaked] = len(subject_pool) + np.arange(leaked.size)

    mail_frame = pd.DataFrame(
        {
            "mail_id": np.arange(1, mails + 1, dtype=np.int64),
            "email": pd.Series(sender_pool.array.take(sender_codes)),
            "date": _take(np.datetime_as_string(days, unit="D").tolist(), date_codes),
            "subject": _take([*subject_pool, *leaked_subjects], subject_codes),
            "text": text,
        }
    )
    return customer_frame, mail_frame


def _write_csv_atomically(frame: pd.DataFrame, target: Path) -> None:
    """Write ``frame`` to a temporary file next to ``target``, then ``os.replace`` it."""
    fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            frame.to_csv(handle, index=False)
            handle.flush()
            os.fsync(handle.fileno())
        temp.chmod(0o644)  # mkstemp creates 0600 files; make the result ordinary
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_complaints(
    out_dir: str | os.PathLike[str],
    customers: int,
    *,
    mails_per_customer: int = 3,
    seed: int = 0,
) -> tuple[Path, Path]:
    """Write ``customers.csv`` and ``mails.csv`` into ``out_dir`` (created if missing).

    Each file is written to a temporary name in ``out_dir`` and moved into place with
    ``os.replace``, so readers never see a half-written file. Returns both paths.
    """
    _validate(customers, mails_per_customer, seed)
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    customer_frame, mail_frame = generate_frames(
        customers, mails_per_customer=mails_per_customer, seed=seed
    )
    customers_path, mails_path = directory / "customers.csv", directory / "mails.csv"
    _write_csv_atomically(customer_frame, customers_path)
    _write_csv_atomically(mail_frame, mails_path)
    return customers_path, mails_path
