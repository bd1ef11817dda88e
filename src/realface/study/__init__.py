"""A blind authenticity study, as in the paper (Sec. 4.2.1): participants see the results of several
methods for the same portrait in random order and pick the most realistic.

:mod:`~realface.study.create` makes a study folder from the methods' output folders,
:mod:`~realface.study.votes` keeps the votes, :mod:`~realface.study.serve` is the participants' web page
(Gradio, imported only when served) and :mod:`~realface.study.report` turns the votes into win rates,
pairwise preferences, agreement and a chart.
"""

from realface.study.create import CreateConfig, CreateResult, Item, Study, create_study, pair_folders
from realface.study.report import study_report, write_report
from realface.study.votes import Vote, VoteLog

__all__ = [
    "CreateConfig",
    "CreateResult",
    "Item",
    "Study",
    "Vote",
    "VoteLog",
    "create_study",
    "pair_folders",
    "study_report",
    "write_report",
]
