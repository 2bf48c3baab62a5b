"""The MARL paper's figures reproduced on the analytic model: the runs, the report and the figures.

    from marl_lab.reproduction import StudySettings, run_study, write_results, write_figures, write_report
    res = write_results(run_study(StudySettings(quick=True), command="..."), "out/results.json")
    write_figures(res, "out")
    write_report(res, "out")        # report.md: our numbers beside the paper's, figure by figure

`examples/reproduce_paper.py` is the command line; `--from-results` redraws and rewrites from a stored
results.json (`read_results`) without running anything.
"""

from marl_lab.reproduction.figures import figure_names, write_figures
from marl_lab.reproduction.report import report_markdown, write_report
from marl_lab.reproduction.study import ResultsError, StudySettings, read_results, run_study, write_results

__all__ = [
    "ResultsError",
    "StudySettings",
    "figure_names",
    "read_results",
    "report_markdown",
    "run_study",
    "write_figures",
    "write_report",
    "write_results",
]
