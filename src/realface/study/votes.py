"""The votes of a study (``votes.jsonl``) and each participant's order of items and candidates.

One line per vote, appended with one ``O_APPEND`` write and fsynced (:class:`realface.batch.Manifest`),
so a crash loses at most the vote being written and never mixes two. A participant votes once per item:
a second vote for the same item is refused, and the first one counts when a file holds two.

Participants are known only by a code they type (no accounts); their order of items and, per item,
of candidates is drawn from the study's seed, the code and the item, so it is the same after a reload.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass

import numpy as np

from realface.batch import Manifest, RecordKind
from realface.errors import ConfigError
from realface.study.create import Item, Study

__all__ = ["Vote", "VoteLog", "check_code", "item_order", "candidate_order"]

_CODE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
IDENTITY_ANSWERS = ("yes", "no", "unsure")


def check_code(code: str) -> str:
    """A participant code, stripped; refused unless 1-64 letters, digits, ``_`` or ``-``."""
    code = (code or "").strip()
    if not _CODE.match(code):
        raise ConfigError("the participant code must be 1 to 64 letters, digits, '_' or '-'")
    return code


@dataclass(frozen=True)
class Vote:
    """One answer: ``participant`` picked candidate ``code`` (method ``method``) of ``item``.

    ``shown``: the candidate codes in the order the participant saw them (left to right);
    ``identity``: the answer to "same person as the reference?" (``yes``/``no``/``unsure``) or None.
    """

    participant: str
    item: str
    code: str
    method: str
    shown: tuple[str, ...]
    identity: str | None = None
    time: float = 0.0

    def to_json(self) -> str:
        return json.dumps(
            {
                "participant": self.participant,
                "item": self.item,
                "code": self.code,
                "method": self.method,
                "shown": list(self.shown),
                "identity": self.identity,
                "time": self.time,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, line: str) -> Vote:
        d = json.loads(line)
        if not isinstance(d, dict):
            raise ValueError("not a JSON object")
        try:
            return cls(
                participant=str(d["participant"]),
                item=str(d["item"]),
                code=str(d["code"]),
                method=str(d["method"]),
                shown=tuple(str(c) for c in d["shown"]),
                identity=None if d.get("identity") is None else str(d["identity"]),
                time=float(d.get("time", 0.0)),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a vote record ({exc})") from None


VOTE_RECORDS: RecordKind[Vote] = RecordKind(
    "study votes", Vote.to_json, Vote.from_json, lambda v: f"{v.participant}/{v.item}"
)


def _rng(seed: int, *parts: str) -> np.random.Generator:
    digest = hashlib.sha256("\0".join((str(seed), *parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def item_order(study: Study, participant: str) -> list[Item]:
    """The items in the order ``participant`` sees them."""
    order = _rng(study.seed, "items", participant).permutation(len(study.items))
    return [study.items[i] for i in order]


def candidate_order(study: Study, participant: str, item: Item) -> list[str]:
    """The candidate codes of ``item`` in the order (left to right) ``participant`` sees them."""
    codes = list(item.candidates)
    return [codes[i] for i in _rng(study.seed, "candidates", participant, item.id).permutation(len(codes))]


class VoteLog:
    """The votes of one study, read once and then kept in step with what is appended here."""

    def __init__(self, study: Study) -> None:
        self.study = study
        self._file = Manifest(study.votes_path, VOTE_RECORDS)
        self._lock = threading.Lock()
        self._votes: dict[tuple[str, str], Vote] = {}
        for vote in self._file.records():
            self._votes.setdefault((vote.participant, vote.item), vote)  # the first vote counts

    def votes(self) -> list[Vote]:
        """Every counted vote (one per participant and item), in file order."""
        with self._lock:
            return list(self._votes.values())

    def done(self, participant: str) -> set[str]:
        """The ids of the items ``participant`` has voted on."""
        with self._lock:
            return {item for p, item in self._votes if p == participant}

    def next_item(self, participant: str) -> Item | None:
        """The first item of ``participant``'s order without a vote, or None when all are done."""
        done = self.done(participant)
        return next((it for it in item_order(self.study, participant) if it.id not in done), None)

    def record(self, participant: str, item_id: str, position: int, identity: str | None = None) -> Vote:
        """Append ``participant``'s pick of the candidate at ``position`` (0: leftmost) of ``item_id``.

        Raises:
            ConfigError: bad code, unknown item, position or answer, or a vote for this item exists.
        """
        participant = check_code(participant)
        try:
            item = self.study.item(item_id)
        except KeyError:
            raise ConfigError(f"no item {item_id!r} in this study") from None
        shown = candidate_order(self.study, participant, item)
        if not 0 <= position < len(shown):
            raise ConfigError(f"pick one of the {len(shown)} candidates")
        if identity is not None and identity not in IDENTITY_ANSWERS:
            raise ConfigError(f"the identity answer must be one of {', '.join(IDENTITY_ANSWERS)}")
        code = shown[position]
        vote = Vote(participant, item.id, code, item.candidates[code], tuple(shown), identity, time.time())
        with self._lock:
            if (participant, item.id) in self._votes:
                raise ConfigError("this item already has your vote; it counts once")
            self._file.append(vote)
            self._votes[(participant, item.id)] = vote
        return vote
