"""The simulated printer fleet behind `tonerwatch up --demo`."""

from tonerwatch.demo.fleet import DemoPrinter, Scenario, build_fleet, run_demo_fleet

__all__ = ["DemoPrinter", "Scenario", "build_fleet", "run_demo_fleet"]
