# The benchmark suites, installed as the package `lmbench.suites` (see pyproject.toml's
# package-dir) so that a non-editable `pip install .` has them too; lmbench.run.suite finds
# them through this package, never through a path relative to the source tree.
