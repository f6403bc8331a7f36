"""Compare solvers on fixed features (work in progress this session)."""


def add_arguments(parser):
    pass


def main(args):
    raise NotImplementedError("assignsolve compare: not yet available")
