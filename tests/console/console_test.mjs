// The operator console in headless chromium (run by run_console_test.sh,
// which starts logstard and `logstar console` and passes their addresses).
// Replays a recorded stream through the daemon and checks that the page's
// overlay and timeline follow the frames; clicks a point of a window's
// Pareto front and checks, in the daemon's own answers to the controlling
// stream (replay --results), that the next frame ran with that point.
// Then what pages cost the daemon (its metrics): two pages on a session
// share one Watch call, and closing them ends it.
// Screenshots are kept in ARTIFACTS.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

const { LOGSTAR, DAEMON, TOKEN, STREAM, WORK, CONSOLE, ARTIFACTS, CHROMIUM, METRICS } = process.env;
const SESSION = "console-test";

// `logstar replay` of the stream into the session at its recorded pace;
// resolves with its exit code. Every frame is analysed (the block policy):
// on a loaded machine the recording's policy dropped one, and "answered
// every frame" failed.
function replay(name) {
  const child = spawn(LOGSTAR, ["replay", STREAM, "--server", DAEMON, "--token", TOKEN,
                                "--session", SESSION, "--speed", "1", "--overload", "block",
                                "--results", `${WORK}/${name}.jsonl`],
                      { stdio: ["ignore", "ignore", "inherit"] });
  return new Promise((resolve) => child.on("exit", (code) => resolve(code)));
}

// What the page shows, read from the attributes it keeps for tests.
function snapshot(page) {
  return page.evaluate(() => {
    const canvas = document.getElementById("frame");
    // Pixels of the drawn overlay: green (atoms) or a sublattice colour
    // differ from the grey frame in hue.
    const ctx = canvas.getContext("2d");
    const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    let coloured = 0;
    for (let i = 0; i < data.length; i += 4) {
      if (Math.max(data[i], data[i + 1], data[i + 2]) - Math.min(data[i], data[i + 1], data[i + 2]) > 80) coloured++;
    }
    return {
      frames: Number(document.body.dataset.frames),
      sequence: Number(canvas.dataset.sequence),
      atoms: Number(canvas.dataset.atoms),
      regions: Number(canvas.dataset.regions),
      scaleBar: Number(canvas.dataset.scaleBarAngstrom || 0),
      points: Number(document.getElementById("timeline").dataset.points),
      windows: document.querySelectorAll("#grid rect").length,
      fronts: document.querySelectorAll("svg.front").length,
      coloured,
      width: canvas.width,
    };
  });
}

// The daemon's Watch calls attached (its logstar_watchers gauge).
async function daemonWatchers() {
  const text = await (await fetch(METRICS)).text();
  const m = text.match(/^logstar_watchers(?:\{[^}]*\})? (\S+)$/m);
  assert.ok(m, "logstar_watchers in the daemon's metrics");
  return Number(m[1]);
}

async function until(what, check, timeoutMs) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value.ok) return value;
    assert.ok(Date.now() < end, `${what} within ${timeoutMs} ms: ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const browser = await chromium.launch({
  executablePath: CHROMIUM, headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1100 } });
  const page = await context.newPage();
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));

  // Without the daemon's token the console refuses; with it (once, in the
  // URL) it keeps a cookie and drops the token from the address.
  assert.equal((await page.goto(`${CONSOLE}/`)).status(), 401);
  await page.goto(`${CONSOLE}/?session=${SESSION}&token=${TOKEN}`);
  assert.ok(!page.url().includes("token="), page.url());
  assert.equal(await page.title(), "logstar console");

  // The live view follows the stream.
  const first = replay("a");
  await page.waitForFunction(() => Number(document.body.dataset.frames) >= 3, null, { timeout: 60000 });
  const early = await snapshot(page);
  await page.waitForFunction((n) => Number(document.body.dataset.frames) >= n + 3, early.frames,
                             { timeout: 60000 });
  const late = await snapshot(page);
  await page.screenshot({ path: `${ARTIFACTS}/console_live.png`, fullPage: true });
  assert.ok(late.sequence > early.sequence, JSON.stringify({ early, late }));
  assert.ok(late.points > early.points, "the timeline grows with the frames");
  assert.ok(late.atoms > 50, "atoms drawn");
  assert.ok(late.coloured > 500, `the overlay is drawn over the frame (${late.coloured} px)`);
  assert.equal(late.width, 256, "the 256² frame's preview");
  assert.equal(late.windows, 4, "a 256² frame in 128² windows: 4 windows in the grid");
  assert.equal(late.fronts, 4);
  assert.ok(late.scaleBar > 0, "a scale bar from the pixel size");
  assert.equal(await first, 0, "replay a answered every frame");

  // The operator picks a point that is not in use on a window's front.
  const pick = await page.evaluate(() => {
    const c = document.querySelector("svg.front circle:not(.chosen)");
    const w = Number(c.dataset.window), i = Number(c.dataset.index);
    return { window: w, index: i, parameters: state.last.windows[w].front[i].parameters };
  });
  await page.click(`svg.front circle[data-window="${pick.window}"][data-index="${pick.index}"]`);
  await page.waitForFunction(() => document.getElementById("pick-status").textContent.includes("waiting"),
                             null, { timeout: 10000 });
  // Recorded in the session (GetSession through the console).
  const info = await page.evaluate(async (s) => (await fetch(`/api/session?id=${s}`)).json(), SESSION);
  assert.ok(info.picks.some((p) => p.window === pick.window && p.front_index === pick.index),
            JSON.stringify(info.picks));

  // The next frames run with it: the page sees it, and so does the
  // controlling stream's own answer.
  const second = replay("b");
  const applied = page.waitForFunction(() => document.body.dataset.pickApplied, null,
                                       { timeout: 60000 });
  assert.equal(await second, 0, "replay b answered every frame");
  const answers = readFileSync(`${WORK}/b.jsonl`, "utf8").trim().split("\n").map((l) => JSON.parse(l));
  const next = answers.find((a) => a.windows);
  const used = next.windows[pick.window];
  const why = JSON.stringify({ pick, used: { chosen: used.chosen, cache: used.cache, parameters: used.parameters } });
  assert.equal(used.chosen, pick.index, "the daemon's next result uses the picked point: " + why);
  assert.ok(Math.abs(used.parameters.threshold - pick.parameters.threshold) < 1e-9, why);
  await applied;
  const clickToEffect = Number(await page.evaluate(() => document.body.dataset.pickFrames));
  assert.equal(clickToEffect, 1, "in use from the first frame after the click");
  const listed = await page.evaluate(() => document.getElementById("picks").innerHTML);
  assert.ok(listed.includes(`window ${pick.window} → point ${pick.index}`), listed);
  await page.screenshot({ path: `${ARTIFACTS}/console_after_pick.png`, fullPage: true });
  assert.deepEqual(pageErrors, []);

  // A second page on the session: it shows the current frame at once (the
  // session is idle now) and shares the first page's Watch call.
  assert.equal(await daemonWatchers(), 1, "one page: one watcher");
  const other = await context.newPage();
  other.on("pageerror", (e) => pageErrors.push(String(e)));
  await other.goto(`${CONSOLE}/?session=${SESSION}`);  // the cookie from the first page
  await other.waitForFunction(() => Number(document.body.dataset.frames) >= 1, null,
                               { timeout: 10000 });
  const shown = await snapshot(other);
  assert.equal(shown.sequence, (await snapshot(page)).sequence, "the latest frame");
  assert.equal(await daemonWatchers(), 1, "two pages on one session: still one watcher");
  // Closed pages stop costing: the console notices (keep-alives) and ends
  // its watch, with no result coming to write.
  const closed = Date.now();
  await other.close();
  await page.close();
  await until("the watch ends once the pages are closed",
              async () => ({ ok: (await daemonWatchers()) === 0 }), 10000);
  const closeToEnd = Date.now() - closed;
  assert.deepEqual(pageErrors, []);
  console.log(JSON.stringify({ early, late, pick, clickToEffect, frames: answers.length,
                               closeToEnd }));
} finally {
  await browser.close();
}
