"""`python -m harperbq.devstack.strict_bigquery start ...`: bqemulator's own CLI, strict."""

from harperbq.devstack.strict_bigquery.layer import install


def main() -> None:
    install()
    from bqemulator.cli import main as emulator_main

    emulator_main()


if __name__ == "__main__":
    main()
