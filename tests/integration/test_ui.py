"""What a person sees in the Prefect UI after a goal ran, checked in a real browser.

A real `prefect server start` serves both the API and the UI (DeploymentStack); a goal
runs through the `achieve-goal/goal` deployment on a process worker, with the model
served by the project's test server: a plan with two parallel tasks and a composite
task, so the run has task runs and a subflow. Then headless Debian Chromium, driven by
Selenium through Debian's chromedriver, opens the UI (a JavaScript single-page app: every
check waits for what it looks for, nothing sleeps) and screenshots each page into
test-output/ui/ (git-ignored). `make browser` installs the browser.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from goalflow.testing import ChatRequest, OpenAITestServer, Reply
from goalflow.testing.deployment_stack import DeploymentStack, model_env
from tests.helpers import DIAMOND, TEST_KEY, echo_answer, task

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-output" / "ui"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# The machine's network is closed: Chromium must not try to reach Google's services.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)
WAIT_SECONDS = 60

GOAL = "Write a short report on green tea"
# The diamond plan, its last task broken down: a subflow with task runs of its own.
PLAN = {**DIAMOND, "tasks": [*DIAMOND["tasks"][:3], {**DIAMOND["tasks"][3], "kind": "composite"}]}
SUBPLAN = {
    "tasks": [
        task("outline", "Outline report", ["pros", "cons"], ["outline"]),
        task("write", "Write final report", ["outline"], ["report"]),
    ]
}

pytestmark = pytest.mark.slow
T = TypeVar("T")


def _answer(request: ChatRequest) -> str | Reply:
    if request.schema_name == "PlanDraft":
        return json.dumps(PLAN)
    if request.schema_name == "SubPlanDraft":
        return json.dumps(SUBPLAN)
    # "<report from Write final report>": looks like an HTML tag to the UI's renderer.
    return echo_answer(request)


@pytest.fixture(scope="module", autouse=True)
def _browser_installed() -> None:
    """Fail, not skip, without the browser: CI must run this test."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not found: the UI test needs Debian's chromium and "
            "chromium-driver; install them with `make browser` (scripts/browser-up.sh)",
            pytrace=False,
        )


@pytest.fixture(scope="module")
def stack() -> Iterator[DeploymentStack]:
    with OpenAITestServer(api_key=TEST_KEY, default=_answer) as llm:
        worker_env = model_env(llm.base_url, TEST_KEY)
        with DeploymentStack(ROOT, worker_env) as stack:
            yield stack


@pytest.fixture(scope="module")
def flow_run_id(stack: DeploymentStack) -> str:
    # Reflection off: the run's task runs are exactly the plan's (no `reflect:` run).
    code, flow_run_id = stack.deployment_run(goal=GOAL, advanced={"reflection": False})
    assert code == 0, stack.flow_run(flow_run_id)["state"]
    return flow_run_id


@pytest.fixture(scope="module")
def screenshots() -> Path:
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    return SCREENSHOTS


class PrefectUI:
    """The Prefect UI in a headless Chromium, with waits for what a page must show."""

    def __init__(self, driver: WebDriver, base_url: str, screenshots: Path) -> None:
        self.driver = driver
        self.base_url = base_url
        self.screenshots = screenshots

    def until(self, what: str, condition: Callable[[WebDriver], T | None]) -> T:
        wait = WebDriverWait(
            self.driver, WAIT_SECONDS, ignored_exceptions=[StaleElementReferenceException]
        )
        try:
            return wait.until(condition)  # type: ignore[arg-type]
        except TimeoutException:
            shot = self.screenshot("timed-out")
            body = self.driver.find_element(By.TAG_NAME, "body").text
            raise AssertionError(
                f"the UI did not show {what} within {WAIT_SECONDS} s at "
                f"{self.driver.current_url} (screenshot {shot}); the page reads:\n{body[:2000]}"
            ) from None

    def open_flow_run(self, flow_run_id: str) -> None:
        self.driver.get(f"{self.base_url}/runs/flow-run/{flow_run_id}")

    def state_of(self, title: str) -> str:
        """The state badge of the flow run page titled ``title``, once that page shows
        (after a click, the previous run's page may still be on screen for a moment)."""

        def shown(d: WebDriver) -> str | None:
            crumbs = d.find_elements(By.CSS_SELECTOR, ".page-heading-flow-run .p-bread-crumbs")
            badges = d.find_elements(By.CSS_SELECTOR, ".page-heading-flow-run .state-badge")
            if not crumbs or crumbs[0].text.split("\n")[-1] != title or not badges:
                return None
            return badges[0].text or None

        return self.until(f"the flow run page {title!r}", shown)

    def tab(self, name: str) -> None:
        """Click the run page's tab ``name`` and wait until it is the selected one."""
        xpath = f"//li[contains(@class, 'p-tab')][normalize-space()='{name}']"

        def selected(d: WebDriver) -> bool:
            return "p-tab__active" in (d.find_element(By.XPATH, xpath).get_attribute("class") or "")

        self.until(f"the tab {name!r}", lambda d: d.find_element(By.XPATH, xpath)).click()
        self.until(f"the tab {name!r} selected", selected)

    def text_shows(self, what: str, *texts: str) -> str:
        """The page's visible text, once it contains every one of ``texts``."""

        def shown(d: WebDriver) -> str | None:
            body = d.find_element(By.TAG_NAME, "body").text
            return body if all(t in body for t in texts) else None

        return self.until(what, shown)

    def click(self, what: str, xpath: str) -> None:
        self.until(f"{what} to click", lambda d: d.find_element(By.XPATH, xpath)).click()

    def screenshot(self, name: str) -> Path:
        path = self.screenshots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path


@pytest.fixture(scope="module")
def ui(stack: DeploymentStack, screenshots: Path) -> Iterator[PrefectUI]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    with tempfile.TemporaryDirectory(prefix="goalflow-chromium-") as profile:
        options.add_argument(f"--user-data-dir={profile}")
        # An explicit driver path: Selenium Manager, which would download one, stays idle.
        driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
        try:
            yield PrefectUI(driver, stack.api_url.removesuffix("/api"), screenshots)
        finally:
            driver.quit()


def _card(key: str) -> str:
    return f"//*[contains(@class, 'artifact-card__title')][normalize-space()='{key}']"


def _assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000  # a rendered page, not a blank one


def test_goal_run_page_shows_the_goal_and_its_final_state(ui: PrefectUI, flow_run_id: str) -> None:
    ui.open_flow_run(flow_run_id)

    state = ui.state_of(f"goal: {GOAL}")

    assert state == "Completed"
    _assert_png(ui.screenshot("goal-run"))


def test_task_runs_tab_lists_the_goals_task_runs(ui: PrefectUI, flow_run_id: str) -> None:
    ui.open_flow_run(flow_run_id)
    ui.state_of(f"goal: {GOAL}")
    ui.tab("Task Runs")

    # Each wait is an assertion: it fails naming what the page did not show.
    ui.text_shows(
        "the goal's four task runs, all completed",
        "(4 Completed)",
        "plan goal",
        "task: Gather facts",
        "task: List pros",
        "task: List cons",
    )
    _assert_png(ui.screenshot("goal-task-runs"))


def test_the_composite_task_is_a_subflow_with_its_own_task_runs(
    ui: PrefectUI, flow_run_id: str
) -> None:
    ui.open_flow_run(flow_run_id)
    ui.state_of(f"goal: {GOAL}")
    ui.tab("Subflow Runs")
    ui.text_shows("the one subflow", "1 Flow run", "composite: Write report")
    _assert_png(ui.screenshot("goal-subflow-runs"))

    ui.click("the subflow's link", "//a[normalize-space()='composite: Write report']")
    state = ui.state_of("composite: Write report")
    ui.tab("Task Runs")
    ui.text_shows(
        "the subflow's two task runs, all completed",
        "(2 Completed)",
        "task: Outline report",
        "task: Write final report",
    )

    assert state == "Completed"
    _assert_png(ui.screenshot("subflow-task-runs"))


def test_artifacts_tab_shows_the_plan_and_the_report_with_their_content(
    ui: PrefectUI, flow_run_id: str
) -> None:
    ui.open_flow_run(flow_run_id)
    ui.state_of(f"goal: {GOAL}")
    ui.tab("Artifacts")
    cards = ui.text_shows("the artifacts", "goal-plan", "goal-graph", "goal-report")
    assert "The plan" in cards and "The goal report" in cards
    _assert_png(ui.screenshot("goal-artifacts"))

    ui.click("the plan's card", _card("goal-plan"))
    plan = ui.text_shows("the plan table", "Deliverables: report", "report/write")
    assert f"Goal: {GOAL}" in plan
    # Rows of the plan table as the Markdown renderer shows them, sub-plan included.
    assert "pros List pros llm facts pros" in plan
    assert "report Write report composite pros, cons report" in plan
    assert "report/outline Outline report llm pros, cons outline" in plan
    _assert_png(ui.screenshot("goal-plan"))

    ui.driver.back()
    ui.state_of(f"goal: {GOAL}")
    ui.tab("Artifacts")
    ui.click("the report's card", _card("goal-report"))
    report = ui.text_shows("the report", "Goal report: completed", "Usage")
    # The deliverable as the model wrote it, though it looks like an HTML tag.
    assert "<report from Write final report>" in report
    assert "report/write Write final report llm completed" in report
    _assert_png(ui.screenshot("goal-report"))


def test_the_run_form_describes_every_parameter_and_the_final_message_shows_the_answer(
    ui: PrefectUI, stack: DeploymentStack, flow_run_id: str
) -> None:
    run = stack.flow_run(flow_run_id)
    # The run page's state message carries the deliverable (where a person looks first).
    assert "report = " in (run["state"]["message"] or "")

    ui.driver.get(f"{ui.base_url}/deployments/deployment/{run['deployment_id']}/run")
    form = ui.text_shows(
        "the custom run form with each parameter's description, the advanced section last",
        "What you want done, in plain words",
        "Money budget of one goal in USD",
        "advanced (Optional)",
        "Tasks running at once",
    )
    lines = form.splitlines()

    # The goal first, and required: not marked "(Optional)" as every other parameter is.
    assert lines[lines.index("Parameters") + 1] == "goal"
    assert "goal (Optional)" not in lines and "plan (Optional)" in lines
    # The less common options inside the advanced section, as plain inputs.
    assert form.index("advanced (Optional)") < form.index("concurrency (Optional)")
    assert "by default 2" in form  # max_depth's default, said where the field is empty
    _assert_png(ui.screenshot("goal-run-form"))
