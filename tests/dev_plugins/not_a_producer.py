from embstore.hookspecs import hookimpl


class Plain:
    name = "plain"


@hookimpl
def register_producers(register):
    register(Plain)
