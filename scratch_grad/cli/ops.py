"""`scratch-grad ops`: the op registry, as a table or (--json) as JSON, with the ops --import brings in."""
import argparse
import json
import os
import sys

from . import options


def build_parser():
    parser = argparse.ArgumentParser(prog="scratch-grad ops",
                                     description="List the registered ops (with those your --import modules register).")
    options.add_imports(parser)
    options.add_json(parser, "print the registry as JSON (to PATH if given): a list of ops, each with its name, kind, "
                             "arity, input domains, smoothness, kink rule, second order, keyword ranges and the "
                             "module that defined it", optional_path=True)
    return parser


def _domain(domain):
    return {"description": domain.description, "low": domain.low, "high": domain.high,
            "differentiable": domain.differentiable, "avoid": list(domain.avoid), "closed": list(domain.closed),
            "poles": list(domain.poles), "infinities": list(domain.infinities), "nan": domain.nan,
            "large": domain.large}


def describe(spec):
    """One registry entry as JSON-ready data (infinite bounds as the strings "inf", "-inf")."""
    from ..testing.imports import defined_in
    from ..testing.parity import json_safe
    entry = {"name": spec.name, "kind": spec.kind, "arity": None if spec.variadic else spec.arity,
             "variadic": spec.variadic, "domains": [_domain(d) for d in spec.domain], "smooth": spec.smooth,
             "kink_rule": spec.kink_rule, "twice_differentiable": spec.twice_differentiable,
             "module": defined_in(spec)}
    if spec.params:
        entry["params"] = {name: {"type": type(param).__name__, **json_safe(param)}
                           for name, param in spec.params.items()}
    return json_safe(entry)


def table(registry):
    lines = [f"{'op':<18}{'kind':<13}{'inputs':<8}{'smooth':<8}{'2nd order':<10}domain / kink rule"]
    from ..testing.imports import defined_in
    for name, spec in sorted(registry.items()):
        domains = ", ".join(d.description for d in spec.domain)
        rule = f"; {spec.kink_rule}" if spec.kink_rule else ""
        arity = "n" if spec.variadic else str(spec.arity)
        module = defined_in(spec) or ""
        origin = "" if module.startswith("scratch_grad.") else f"  (from {module})"
        lines.append(f"{name:<18}{spec.kind:<13}{arity:<8}{'yes' if spec.smooth else 'no':<8}"
                     f"{'yes' if spec.twice_differentiable else 'no':<10}{domains}{rule}{origin}")
    lines.append(f"{len(registry)} ops")
    return "\n".join(lines)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    options.validate(parser, args, needs=())
    from ..ops import REGISTRY
    if args.json is None:
        print(table(REGISTRY))
        return 0
    text = json.dumps([describe(spec) for _, spec in sorted(REGISTRY.items())], indent=2)
    if args.json == "-":
        print(text)
    else:
        with open(os.path.expanduser(args.json), "w") as handle:
            handle.write(text + "\n")
        print(f"{len(REGISTRY)} ops written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
