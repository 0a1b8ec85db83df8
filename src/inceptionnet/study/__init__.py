"""The paper's claims about residual connections, reproduced at small scale: design, run, tables, report, plot."""

from inceptionnet.study.design import Arm, Study, build_study, run_dir
from inceptionnet.study.report import format_report, write_results
from inceptionnet.study.run import run_study

__all__ = ["Arm", "Study", "build_study", "format_report", "run_dir", "run_study", "write_results"]
