"""The playbook's phases and matrix rows, declared once (DESIGN.md "Flows and phases").

Everything that names a phase or a row reads this table: the markers pytest registers, the order of the tests,
which flow a selection is, the sections of the environment file a row needs (config and preflight), which rows
may be required, the plan and the report. Plain Python, no pytest: the environment loader (drivers.config) reads
it too. Adding a matrix row is one `Phase(...)` line here, its driver, its fixture, its runbook module and docs.
"""

from __future__ import annotations

from dataclasses import dataclass

ROLLBACK, BLUEGREEN, MATRIX = "rollback", "bluegreen", "matrix"
SWITCH_BACK = "switch_back"  # an operator sends traffic back to the warm standby at once
_ALL = frozenset({ROLLBACK, BLUEGREEN, MATRIX})


@dataclass(frozen=True)
class Phase:
    id: str
    title: str  # what the phase does, in one line an operator reads in the plan and the report
    flows: frozenset[str]
    marker: str = ""  # a matrix row's own marker (`-m dr_smoke`); flow phases carry the flow's marker
    recording: bool = False  # runs even after a failed gate: the evidence of a failure is the point
    sections: tuple[str, ...] = ()  # environment sections that configure the row ([axe] for DR-AXE)
    extra_sections: tuple[str, ...] = ()  # sections the row also reads when it runs ([browser])
    # A parallel run (-n) may spread the row's tests over workers (each page of DR-AXE in its own browser);
    # otherwise they run together on one worker (DR-ZAP's tests share one scan, DR-E2E's steps one flow).
    spread: bool = False

    @property
    def is_row(self) -> bool:
        return bool(self.marker)


# In the one total order that agrees with each flow's own order (a run never mixes flows).
PHASES: tuple[Phase, ...] = (
    Phase("PRE", "preconditions: packages, webhook, tools, approval, which slot is live", _ALL),
    Phase("RB-1", "announce the rollback before the service is touched", frozenset({ROLLBACK})),
    Phase("RB-2", "stop the site and recycle the App Pool", frozenset({ROLLBACK})),
    Phase("RB-3", "deploy the previous stable version and start it", frozenset({ROLLBACK})),
    Phase("BG-1", "deploy the release to the idle slot", frozenset({BLUEGREEN})),
    Phase("DR-SMOKE", "Health 200, Swagger 200, Kerberos answering", _ALL, marker="dr_smoke", spread=True),
    Phase("DR-E2E", "main user-flow regression", _ALL, marker="dr_e2e", sections=("e2e",), extra_sections=("browser",)),
    Phase("DR-AXE", "accessibility regression", _ALL, marker="dr_axe", sections=("axe",), extra_sections=("browser",),
          spread=True),
    Phase("DR-ZAP", "security scan", _ALL, marker="dr_zap", sections=("zap",)),
    Phase("RB-4", "announce the redeploy when every check passed", frozenset({ROLLBACK})),
    Phase("RB-5", "record each step in the timeline", frozenset({ROLLBACK}), recording=True),
    Phase("BG-3", "approval, then announce and prepare the switch", frozenset({BLUEGREEN})),
    Phase("BG-4", "switch traffic to the idle slot and monitor", frozenset({BLUEGREEN})),
    Phase("BG-5", "keep the previously live slot as a warm standby", frozenset({BLUEGREEN})),
    Phase("SB-1", "the warm standby serves the previous version, healthy; approval", frozenset({SWITCH_BACK})),
    Phase("SB-2", "switch traffic back to the warm standby", frozenset({SWITCH_BACK})),
    Phase("SB-3", "verify the standby through the public address and announce it", frozenset({SWITCH_BACK})),
)  # fmt: skip

# The markers that are not a row's own: a flow's, and the CI gate's exclusion.
FLOW_MARKERS: dict[str, str] = {
    ROLLBACK: "single-node rollback flow (playbook §6)",
    BLUEGREEN: "Blue/Green release flow (playbook §5)",
    SWITCH_BACK: "switch traffic back to the warm standby at once, after a release (playbook §5, §7)",
    "traffic": "phases that switch or hold production traffic (BG-4, BG-5); excluded by the CI gate",
}

BY_ID: dict[str, Phase] = {p.id: p for p in PHASES}
ORDER: tuple[str, ...] = tuple(p.id for p in PHASES)
ROWS: tuple[str, ...] = tuple(p.id for p in PHASES if p.is_row)
FLOWS: dict[str, tuple[str, ...]] = {
    flow: tuple(p.id for p in PHASES if flow in p.flows)
    for flow in (ROLLBACK, BLUEGREEN, SWITCH_BACK, MATRIX)
}
# The phases only one flow runs: selecting one of them decides the flow.
OWN_PHASES: dict[str, frozenset[str]] = {
    flow: frozenset(p.id for p in PHASES if p.flows == {flow}) for flow in (ROLLBACK, BLUEGREEN, SWITCH_BACK)
}
# The flows that stop, deploy or switch something.
CHANGING_FLOWS = frozenset({ROLLBACK, BLUEGREEN, SWITCH_BACK})
SLOT_FLOWS = frozenset({BLUEGREEN, SWITCH_BACK})  # the flows that act on two slots behind a router
RECORDING: frozenset[str] = frozenset(p.id for p in PHASES if p.recording)


def markers() -> dict[str, str]:
    """Every runbook marker and its help line, as pytest registers them."""
    rows = {p.marker: f"matrix row {p.id}: {p.title}" for p in PHASES if p.is_row}
    phase = {"phase(id)": "the playbook phase this test executes: " + ", ".join(ORDER)}
    return {**FLOW_MARKERS, **rows, **phase}


def row_markers() -> frozenset[str]:
    """The markers that make a test a runbook test (it then needs its phase mark)."""
    return frozenset({ROLLBACK, BLUEGREEN, SWITCH_BACK, *(p.marker for p in PHASES if p.is_row)})
