"""The operator console in a real headless Chromium (Debian's chromium + chromium-driver, Selenium),
against the app served on 127.0.0.1. `scripts/test.sh` installs the browser when missing.

Screenshots of every page at desktop and phone width (and a dispatcher's map) go to
`build/console-screenshots/`. The map draws with WebGL from SwiftShader (Chromium's software
renderer); one test runs a Chromium without WebGL, where the page's lists carry everything.
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
from tests.test_organizations_api import INSIDE, OUTSIDE, call, dispatching_org

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


def chromium(*extra):
    """A headless Chromium with a fresh profile: (driver, profile folder)."""
    profile = tempfile.mkdtemp(prefix="allynet-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                f"--user-data-dir={profile}", f"--window-size={DESKTOP[0]},{DESKTOP[1]}", *extra):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    return driver, profile


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module, cookies cleared between tests. WebGL for the live map
    (MapLibre) without a GPU: SwiftShader, Chromium's software renderer."""
    driver, profile = chromium("--use-angle=swiftshader", "--enable-unsafe-swiftshader")
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def no_webgl_browser():
    """A Chromium without WebGL at all (as on a machine with neither GPU nor software renderer)."""
    driver, profile = chromium("--disable-3d-apis", "--disable-webgl")
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


def live(driver):
    """Wait until the page's socket is connected (in the console's rooms): what happens next reaches it."""
    wait_until(lambda: driver.find_element(By.ID, "live-status").get_attribute("data-state") == "live",
               timeout=10, message="the page's live connection")
    driver.execute_script("window.__same_page = true")


def still_the_same_page(driver):
    return driver.execute_script("return window.__same_page === true")


def map_ready(driver):
    """Wait for the map to have drawn (MapLibre's first idle): WebGL works in this browser."""
    wait_until(lambda: driver.find_element(By.ID, "map").get_attribute("data-state") in ("ready", "no-webgl"),
               timeout=15, message="the map to draw")
    assert driver.find_element(By.ID, "map").get_attribute("data-state") == "ready", "no WebGL: the map did not draw"


def on_map(driver, layer):
    """The feature ids in the map's GeoJSON source `layer` (what MapLibre draws)."""
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        f"window.allynetConsole.map.getSource({layer!r}).getData()"
        ".then(data => done(data.features.map(f => f.id)), () => done(null));")


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
    map_ready(page)
    wait_until(lambda: on_map(page, "reports") == [report_id], message="the camera in the map's source")
    assert report_id in page.find_element(By.ID, "map").get_attribute("data-reports")
    cookie = page.get_cookie("allynet_console")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"


def test_the_queue_updates_live_a_new_camera_comes_and_an_approved_one_goes(page, served, users):
    moderator, other_moderator = users(role="moderator"), users(role="moderator")
    waiting = camera(served, users(), description="Waiting camera")
    sign_in(page, served, moderator)
    live(page)
    page.find_element(By.ID, f"report-{waiting}").find_element(By.NAME, "reason").send_keys("half-typed")
    fresh = camera(served, users(), description="Fresh camera")
    wait_until(lambda: "Fresh camera" in text_of(page, f"report-{fresh}"), message="the new camera's card")
    assert "Pending cameras (2)" in page.find_element(By.ID, "queue-pending").text
    assert api(served, "POST", f"/reports/{fresh}/moderate", other_moderator,
               json={"action": "approve"}).status_code == 200
    wait_until(lambda: not page.find_elements(By.ID, f"report-{fresh}"), message="the approved card to go")
    assert "Pending cameras (1)" in page.find_element(By.ID, "queue-pending").text
    reason = page.find_element(By.ID, f"report-{waiting}").find_element(By.NAME, "reason")
    assert reason.get_attribute("value") == "half-typed"  # the untouched card kept its node
    assert still_the_same_page(page)


def test_a_new_sos_appears_on_the_live_map_and_leaves_when_cancelled(page, served, users):
    moderator, requester = users(role="moderator"), users()
    sign_in(page, served, moderator)
    page.get(f"{served.url}/console/map")
    map_ready(page)
    live(page)
    response = api(served, "POST", "/emergencies", requester, json={"type": "medical", "location": HERE})
    assert response.status_code == 201, response.text
    sos_id = response.json()["data"]["emergency"]["id"]
    wait_until(lambda: "medical" in text_of(page, f"sos-{sos_id}"), message="the SOS in the list")
    wait_until(lambda: on_map(page, "sos") == [sos_id], message="the SOS in the map's source")
    assert api(served, "POST", f"/emergencies/{sos_id}/cancel", requester).status_code == 200
    wait_until(lambda: not page.find_elements(By.ID, f"sos-{sos_id}"), message="the SOS to leave the list")
    wait_until(lambda: on_map(page, "sos") == [], message="the SOS to leave the map")
    assert still_the_same_page(page)


def test_without_webgl_the_map_page_still_lists_everything_live(no_webgl_browser, served, users):
    page = no_webgl_browser
    sign_in(page, served, users(role="moderator"))
    page.get(f"{served.url}/console/map")
    wait_until(lambda: page.find_element(By.ID, "map").get_attribute("data-state") == "no-webgl",
               message="the map to give up on WebGL")
    assert "needs WebGL" in page.find_element(By.ID, "map").text
    live(page)
    response = api(served, "POST", "/emergencies", users(), json={"type": "crime", "location": HERE})
    sos_id = response.json()["data"]["emergency"]["id"]
    wait_until(lambda: "crime" in text_of(page, f"sos-{sos_id}"), message="the SOS in the list")
    assert still_the_same_page(page)


def test_a_dispatcher_sees_the_sos_of_the_area_only_and_no_staff_pages(page, served, users):
    owner, admin, dispatcher = users(), users(role="admin"), users(display_name="Dispatcher")
    org_id = dispatching_org(served, owner, admin, [dispatcher])
    assert call(served, "PATCH", f"/organizations/{org_id}/members/{dispatcher['_id']}", owner,
                {"role": "dispatcher"})[0] == 200
    before = api(served, "POST", "/emergencies", users(), json={"type": "medical", "location": INSIDE}).json()
    sign_in(page, served, dispatcher)
    assert heading(page) == "Reports queue"
    page.get(f"{served.url}/console/map")
    assert page.find_elements(By.ID, f"sos-{before['data']['emergency']['id']}")
    map_ready(page)
    live(page)
    inside = api(served, "POST", "/emergencies", users(), json={"type": "fire", "location": INSIDE}).json()
    outside = api(served, "POST", "/emergencies", users(), json={"type": "fire", "location": OUTSIDE}).json()
    inside_id, outside_id = inside["data"]["emergency"]["id"], outside["data"]["emergency"]["id"]
    wait_until(lambda: page.find_elements(By.ID, f"sos-{inside_id}"), message="the SOS inside the area")
    wait_until(lambda: inside_id in (on_map(page, "sos") or []), message="the SOS inside on the map")
    assert outside_id not in on_map(page, "sos") and not page.find_elements(By.ID, f"sos-{outside_id}")
    assert on_map(page, "areas") == [org_id]
    os.makedirs(SHOTS, exist_ok=True)
    assert page.save_screenshot(os.path.join(SHOTS, "map-dispatcher-desktop.png"))
    assert [link.text for link in page.find_elements(By.CSS_SELECTOR, "nav a")] == ["Reports", "Live map"]
    page.get(f"{served.url}/console/users")
    assert "only" in page.find_element(By.ID, "error-message").text
    assert page.find_elements(By.ID, "live-status") == []


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
    scripts = page.find_elements(By.TAG_NAME, "script")
    assert scripts and all(script.get_attribute("src").startswith(f"{served.url}/console/static/")
                           and script.get_attribute("textContent") == "" for script in scripts)
    assert card.find_elements(By.TAG_NAME, "img") == []
    live(page)  # a card that arrives live is the server's escaped markup too
    second = camera(served, users(), description=XSS)
    wait_until(lambda: page.find_elements(By.ID, f"report-{second}"), message="the live card")
    assert page.find_element(By.CSS_SELECTOR, f"#report-{second} .description").text == XSS
    assert no_dialog(page) and page.execute_script("return window.__xss") is None
    assert page.find_elements(By.CSS_SELECTOR, f"#report-{second} img") == []


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
        "type": "road_closure", "location": {"lat": 45.771, "lng": 4.826}, "description": "Bridge closed for works",
        "expires_at": (clock.now() + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")})
    api(served, "POST", "/reports", users(), json={"type": "hazard", "location": {"lat": 45.758, "lng": 4.846},
                                                   "description": "Oil on the road"})
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
            if name == "map":
                map_ready(page)
            width = page.execute_script("return document.documentElement.scrollWidth")
            assert width <= size[0], f"{name} scrolls sideways at {label} width"
            assert page.save_screenshot(os.path.join(SHOTS, f"{name}-{label}.png"))
    assert set(os.listdir(SHOTS)) >= {f"{n}-{w}.png" for n in ("alerts", "audit", "login", "map", "reports", "users")
                                      for w in ("desktop", "phone")}
