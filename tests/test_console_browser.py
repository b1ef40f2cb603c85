"""The operator console in a real headless Chromium (Debian's chromium + chromium-driver, Selenium),
against the app served on 127.0.0.1. `scripts/test.sh` installs the browser when missing.

Screenshots of every page at desktop and phone width go to `build/console-screenshots/`.
"""
import os
import shutil
import tempfile
from datetime import timedelta
from urllib.parse import quote

import pytest
import requests
from bson import ObjectId

from allynet import clock
from tests.scaleout_support import REPO, SioClient, serve, wait_until

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import NoAlertPresentException, WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="chromium and chromium-driver missing: run scripts/ensure_chromium.sh")

SHOTS = os.path.join(REPO, "build", "console-screenshots")
DESKTOP, PHONE = (1280, 900), (390, 844)
HERE = {"lat": 45.764, "lng": 4.8357}
XSS = '<script>window.__xss = 1; alert("xss")</script><img src=x onerror="window.__xss = 2; alert(2)">'


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module (a fresh profile), cookies cleared between tests."""
    profile = tempfile.mkdtemp(prefix="allynet-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                f"--user-data-dir={profile}", f"--window-size={DESKTOP[0]},{DESKTOP[1]}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def served(app_factory):
    server = serve(app_factory(SOCKETIO_PRIVATE_INSTANCE=True, RATELIMIT_ENABLED=False))
    yield server
    server.stop()


@pytest.fixture
def page(browser, served):
    """The browser, signed out, pointed at the served app."""
    browser.get(f"{served.url}/console/login")
    browser.delete_all_cookies()
    browser.set_window_size(*DESKTOP)
    yield browser


@pytest.fixture
def users(served):
    """Create users in the served app's store, with tokens."""
    from allynet.auth import service as auth_service
    from allynet.users import service as users_service

    def create(role="user", display_name="Someone", **fields):
        with served.app.app_context():
            user = users_service.create_user(db=served.app.extensions["allynet_db"],
                                             email=f"{ObjectId()}@example.com", password="password123",
                                             display_name=display_name, role=role, **fields)
            user.update(auth_service.issue_tokens(user), password="password123")
        return user

    return create


def api(served, method, path, user=None, **kwargs):
    headers = {"Authorization": f"Bearer {user['access_token']}"} if user else {}
    return requests.request(method, f"{served.url}/api/v1{path}", headers=headers, timeout=10, **kwargs)


def sign_in(driver, served, user):
    driver.get(f"{served.url}/console/login")
    driver.find_element(By.NAME, "email").send_keys(user["email"])
    driver.find_element(By.NAME, "password").send_keys(user["password"])
    driver.find_element(By.CSS_SELECTOR, "#sign-in button[type=submit]").click()
    # The sign-in page has an h1 too: wait for the page the redirect lands on (its cookie set).
    wait_until(lambda: driver.find_elements(By.ID, "error-message")
               or ("/console/login" not in driver.current_url and driver.find_elements(By.TAG_NAME, "h1")),
               message="a page after sign-in")


def heading(driver):
    return driver.find_element(By.TAG_NAME, "h1").text


def camera(served, user, description="Camera at the bridge"):
    response = api(served, "POST", "/reports", user, json={"type": "speed_camera", "location": HERE,
                                                           "description": description})
    assert response.status_code == 201, response.text
    return response.json()["data"]["id"]


def text_of(driver, element_id):
    """The element's text, or "" while it is not there (a page still loading)."""
    try:
        return " ".join(element.text for element in driver.find_elements(By.ID, element_id))
    except WebDriverException:  # went stale under a navigation
        return ""


def no_dialog(driver):
    try:
        driver.switch_to.alert
    except NoAlertPresentException:
        return True
    return False


def test_moderator_approves_a_camera_it_leaves_the_queue_and_shows_on_the_map(page, served, users):
    moderator = users(role="moderator", display_name="Moderator")
    report_id = camera(served, users())
    sign_in(page, served, moderator)
    assert heading(page) == "Reports queue"
    card = page.find_element(By.ID, f"report-{report_id}")
    card.find_element(By.NAME, "reason").send_keys("Seen on street view")
    card.find_element(By.CSS_SELECTOR, "button[value=approve]").click()
    wait_until(lambda: not page.find_elements(By.ID, f"report-{report_id}"), message="the card to go")
    assert heading(page) == "Reports queue"
    page.find_element(By.LINK_TEXT, "Live map").click()
    assert "Camera at the bridge" in page.find_element(By.ID, f"map-report-{report_id}").text
    cookie = page.get_cookie("allynet_console")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"


def test_admin_suspends_a_user_whose_socket_drops_and_next_call_is_refused(page, served, users):
    admin = users(role="admin", display_name="Admin")
    target = users(display_name="Troublemaker")
    sio = SioClient(served.url, target["access_token"])
    try:
        assert sio.sio.connected
        sign_in(page, served, admin)
        page.get(f"{served.url}/console/users?q=Troublemaker")
        card = page.find_element(By.ID, f"user-{target['_id']}")
        card.find_element(By.CSS_SELECTOR, ".suspend input[name=reason]").send_keys("Harassment in chat")
        card.find_element(By.CSS_SELECTOR, ".suspend button").click()
        wait_until(lambda: "Suspended" in text_of(page, f"user-{target['_id']}"),
                   message="the card to show the suspension")
        assert sio.wait_for("session:ended") == {"reason": "suspended"}
        wait_until(lambda: not sio.sio.connected, message="the socket to drop")
    finally:
        sio.close()
    response = api(served, "GET", "/profile", target)
    assert response.status_code == 401 and response.json()["error"]["code"] == "account_suspended"


def test_a_stored_xss_in_a_report_renders_as_text_and_runs_nothing(page, served, users):
    moderator = users(role="moderator")
    report_id = camera(served, users(), description=XSS)
    sign_in(page, served, moderator)
    card = page.find_element(By.ID, f"report-{report_id}")
    assert card.find_element(By.CSS_SELECTOR, ".description").text == XSS
    assert no_dialog(page)
    assert page.execute_script("return window.__xss") is None
    assert page.find_elements(By.TAG_NAME, "script") == []
    assert card.find_elements(By.TAG_NAME, "img") == []


def test_a_plain_user_is_refused(page, served, users):
    plain = users()
    sign_in(page, served, plain)
    assert "moderators, admins and organization dispatchers" in page.find_element(By.ID, "error-message").text
    assert page.get_cookie("allynet_console") is None
    page.get(f"{served.url}/console/reports")
    assert heading(page) == "Sign in"


def test_a_cross_site_form_post_is_refused(page, served, users):
    moderator = users(role="moderator")
    report_id = camera(served, users())
    sign_in(page, served, moderator)
    target = f"{served.url}/console/reports/{report_id}/moderate"
    attack = (f'<form id="f" method="post" action="{target}"><input name="action" value="approve"></form>'
              '<script>document.getElementById("f").submit()</script>')
    page.get("data:text/html;charset=utf-8," + quote(attack))
    wait_until(lambda: page.current_url.startswith(served.url), message="the forged post to land")
    wait_until(lambda: page.find_elements(By.TAG_NAME, "h1"), message="its answer")
    with served.app.app_context():
        report = served.app.extensions["allynet_db"].reports.find_one({"_id": ObjectId(report_id)})
    assert report["status"] == "pending"
    page.get(f"{served.url}/console/reports")  # the session itself is still there
    assert page.find_elements(By.ID, f"report-{report_id}")


def test_screenshots_of_every_page_at_desktop_and_phone_width(page, served, users):
    admin = users(role="admin", display_name="Admin")
    reporter = users(display_name="Reporter")
    camera(served, reporter)
    api(served, "POST", "/alerts", admin, json={
        "type": "road_closure", "location": HERE, "description": "Bridge closed for works",
        "expires_at": (clock.now() + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")})
    api(served, "POST", "/emergencies", reporter, json={"type": "medical", "location": HERE})
    os.makedirs(SHOTS, exist_ok=True)
    for name in ("login",):
        for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
            page.set_window_size(*size)
            page.get(f"{served.url}/console/{name}")
            assert page.save_screenshot(os.path.join(SHOTS, f"{name}-{label}.png"))
    sign_in(page, served, admin)
    for name in ("reports", "users", "alerts", "audit", "map"):
        for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
            page.set_window_size(*size)
            page.get(f"{served.url}/console/{name}")
            assert page.find_elements(By.TAG_NAME, "h1")
            width = page.execute_script("return document.documentElement.scrollWidth")
            assert width <= size[0], f"{name} scrolls sideways at {label} width"
            assert page.save_screenshot(os.path.join(SHOTS, f"{name}-{label}.png"))
    assert sorted(os.listdir(SHOTS)) >= sorted(f"{n}-{w}.png" for n in ("alerts", "audit", "login", "map",
                                                                         "reports", "users")
                                              for w in ("desktop", "phone"))
