// Plays a Headwater HLS or DASH stream in Debian's headless Chromium (hls.js or dash.js) and
// checks that real playback advances, optionally across a forced rendition switch.
//
// Usage: node play.mjs BASE_URL PATH [SECONDS] [TIMEOUT_S] [SCREENSHOT] [--player=hls|dash] [--switch]
//   BASE_URL   origin of the server, e.g. http://127.0.0.1:8080 (the player page is served on it)
//   PATH       manifest path/URL relative to BASE_URL (HLS .m3u8 for hls, DASH .mpd for dash)
//   SECONDS    media seconds that must play (default 5); with SWITCH, seconds required AFTER the switch
//   TIMEOUT_S  overall budget for the playback checks in seconds (default 60); a watchdog kills the
//              whole run at TIMEOUT_S + 30 s (browser launch included)
//   SCREENSHOT optional PNG path written at the end
// Options (environment variable or flag; the flag wins):
//   PLAYER=hls|dash   --player=hls|dash  player library: hls.js 1.7.4 (default) or dash.js 5.2.1
//   LL=1              --ll               hls.js with lowLatencyMode (default: off)
//                                        (hls.js runs report latencyMs: wall clock minus
//                                        hls.playingDate, and hlsLatency: [hls.latency,
//                                        hls.targetLatency, currentTime], every 0.5 s of play)
//   SWITCH=1          --switch           once >= 2 s have played, force a switch to another video
//                                        rendition (highest -> lowest, otherwise -> highest), wait for
//                                        the player to confirm it rendered that rendition, then require
//                                        SECONDS more of playback. Fails if there is only one rendition.
//   CHROMIUM=/path    Chromium binary (default /usr/bin/chromium)
//   --until=FILE      keep playing (SECONDS is then a minimum) until FILE exists
//   PLAYER_DEBUG=1    --debug            hls.js debug logging; its lines from 3 s before to 7 s
//                                        after each stall go into the status
//                                        (`playerLogAroundStalls`)
//   --log=FILE                           every request (ms after the page opened, how long it
//                                        took) and, with --debug, the player's whole log, written
//                                        to FILE in time order
// The status reports `stalls`: how often the element waited for data after playback started
// (HTMLMediaElement `waiting`), `stalledMs`, how long it waited in all, `stallMs`, how long each
// ended stall lasted, `stallingMs`, how long the one still going on has, `stallsAt` (wall clock,
// ms) and `requestsAroundStalls`: every request from 2 s before to 8 s after a stall began
// (`at`: ms after the page opened, `ms`: how long it took, status, path) — which tells a
// server that answered late from a player that did not ask.
// Output: one JSON status line (always, also on failure/timeout), then PLAYED or DID NOT PLAY.
// Exit 0 = SECONDS of media played, >= 100 frames decoded, no fatal player error (hls.js: fatal=true;
// dash.js: every ERROR / PLAYBACK_ERROR event; both: an HTMLMediaElement error) and, with SWITCH,
// the switch was confirmed by the player's event (hls.js LEVEL_SWITCHED + FRAG_CHANGED on the new
// level; dash.js QUALITY_CHANGE_RENDERED for the new representation) and SECONDS played after it.
// Exit 1 otherwise.
// The player page is served by request interception on the server's own origin, so the
// test needs no extra web server and exercises the same-origin path a real site would.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const argv = process.argv.slice(2);
const flags = Object.fromEntries(argv.filter(a => a.startsWith('--')).map(a => {
  const [k, ...v] = a.slice(2).split('=');
  return [k, v.length ? v.join('=') : '1'];
}));
const [base, src, minT = '5', tmo = '60', shot = ''] = argv.filter(a => !a.startsWith('--'));
const player = String(flags.player ?? process.env.PLAYER ?? 'hls').toLowerCase();
const doSwitch = /^(1|true|yes|on)$/i.test(String(flags.switch ?? process.env.SWITCH ?? ''));
const untilFile = flags.until ? String(flags.until) : null;
const lowLatency = /^(1|true|yes|on)$/i.test(String(flags.ll ?? process.env.LL ?? ''));
// --debug: the player's own log (hls.js debug) around stalls goes into the status.
const logFile = flags.log ? String(flags.log) : null;
const debug = /^(1|true|yes|on)$/i.test(String(flags.debug ?? process.env.PLAYER_DEBUG ?? ''));
const consoleLog = [];
if (!base || !src || !['hls', 'dash'].includes(player)) {
  console.error('usage: node play.mjs BASE_URL PATH [SECONDS] [TIMEOUT_S] [SCREENSHOT] ' +
                '[--player=hls|dash] [--switch]   (or env PLAYER=hls|dash SWITCH=1)');
  process.exit(2);
}
const minSeconds = Number(minT);
const SWITCH_AFTER = 2; // seconds of playback before forcing the switch
const MIN_FRAMES = 100;

const here = path.dirname(fileURLToPath(import.meta.url));
const libFile = player === 'dash' ? 'node_modules/dashjs/dist/modern/umd/dash.all.min.js'
                                  : 'node_modules/hls.js/dist/hls.min.js';
const lib = fs.readFileSync(path.join(here, libFile), 'utf8');

// Common in-page probe: playback accounting + switch state machine; the player adapters below
// fill in levels()/current()/requestSwitch() and call switchConfirmed().
const common = `
  const CFG = ${JSON.stringify({ src, doSwitch, SWITCH_AFTER, lowLatency, debug })};
  const v = document.getElementById('v');
  window.probe = { errors: [], fatal: false, frags: 0, played: 0, levels: [], sizes: [],
                   stalls: 0, stalledMs: 0, sw: { state: CFG.doSwitch ? 'waiting' : 'off' } };
  let waitingSince = null;
  v.addEventListener('waiting', () => { if (probe.playStart !== undefined && waitingSince === null) { probe.stalls++; waitingSince = performance.now();
                                       (probe.stallsAt = probe.stallsAt || []).push(Date.now()); } });
  v.addEventListener('playing', () => { if (waitingSince !== null) { const ms = performance.now() - waitingSince; probe.stalledMs += ms;
                                       (probe.stallMs = probe.stallMs || []).push(Math.round(ms)); waitingSince = null; } });
  // how long the stall still going on has lasted (it is in stallMs only once it ends)
  window.stallingMs = () => waitingSince === null ? undefined : Math.round(performance.now() - waitingSince);
  const size = () => v.videoWidth + 'x' + v.videoHeight;
  const fatal = (msg) => { probe.errors.push(msg); probe.fatal = true; };
  v.addEventListener('error', () => fatal('media/code=' + (v.error && v.error.code) + ' ' +
                                          ((v.error && v.error.message) || '') + ' fatal=true'));
  let last = null;
  const tick = () => {
    const ct = v.currentTime;
    if (probe.playStart === undefined) return;
    if (last !== null && !v.seeking && !v.paused) {
      const d = ct - last;
      if (d > 0 && d < 1.5) probe.played += d;   // ignores seeks/jumps, counts real playout only
    }
    last = ct;
    const sw = probe.sw;
    if (sw.state === 'waiting' && probe.played >= CFG.SWITCH_AFTER) startSwitch();
  };
  v.addEventListener('playing', () => { if (probe.playStart === undefined) probe.playStart = v.currentTime; last = v.currentTime; });
  v.addEventListener('timeupdate', tick);
  // every picture size the element has shown, in order (a source that changes resolution)
  v.addEventListener('resize', () => { if (probe.sizes[probe.sizes.length - 1] !== size()) probe.sizes.push(size()); });
  v.addEventListener('seeked', () => { last = v.currentTime; });
  function startSwitch() {
    const sw = probe.sw;
    try {
      probe.levels = levels();
      const vids = probe.levels;
      if (vids.length < 2) {
        sw.state = 'impossible';
        sw.message = 'only ' + vids.length + ' video level(s)/representation(s): nothing to switch to';
        return;
      }
      const cur = current();
      const byRate = [...vids].sort((a, b) => a.bitrate - b.bitrate);
      const lo = byRate[0], hi = byRate[byRate.length - 1];
      const target = (cur && cur.key === hi.key) ? lo : hi;
      Object.assign(sw, { state: 'requested', from: cur, to: target, sizeBefore: size(),
                          requestedAtPlayed: +probe.played.toFixed(3), requestedAtTime: v.currentTime });
      requestSwitch(target);
    } catch (e) { sw.state = 'failed'; sw.message = 'switch threw: ' + e; }
  }
  function switchConfirmed(how) {
    const sw = probe.sw;
    if (sw.state !== 'requested') return;
    Object.assign(sw, { state: 'confirmed', confirmedBy: how, confirmedAtTime: v.currentTime,
                        confirmedAtPlayed: +probe.played.toFixed(3), sizeAtConfirm: size() });
  }
`;

const hlsAdapter = `
  probe.version = Hls.version;
  const hls = new Hls({ lowLatencyMode: CFG.lowLatency, debug: CFG.debug });
  // How far behind live the picture on screen is: wall clock minus its PROGRAM-DATE-TIME.
  probe.latencyMs = [];
  setInterval(() => {
    if (probe.playStart !== undefined && !v.paused && hls.playingDate)
      probe.latencyMs.push(Date.now() - hls.playingDate.getTime());
    if (probe.playStart !== undefined)
      (probe.hlsLatency = probe.hlsLatency || []).push([+(hls.latency || 0).toFixed(3), +(hls.targetLatency || 0).toFixed(3), +v.currentTime.toFixed(3)]);
  }, 500);
  const lv = (l, i) => ({ key: i, index: i, width: l.width, height: l.height, bitrate: l.bitrate, name: l.name });
  const levels = () => hls.levels.map(lv);
  const current = () => { const i = hls.currentLevel >= 0 ? hls.currentLevel : hls.loadLevel;
                          return i >= 0 && hls.levels[i] ? lv(hls.levels[i], i) : null; };
  let switchedSeen = false, lastFragLevel = null;
  const requestSwitch = (t) => { hls.currentLevel = t.index; };
  hls.on(Hls.Events.ERROR, (_, d) => { probe.errors.push(d.type + '/' + d.details + ' fatal=' + d.fatal + (d.error && d.error.message ? ' (' + d.error.message + ')' : ''));
                                       if (d.fatal) probe.fatal = true; });
  hls.on(Hls.Events.FRAG_LOADED, () => probe.frags++);
  hls.on(Hls.Events.MANIFEST_PARSED, () => { probe.levels = levels();
                                             v.play().catch(e => probe.errors.push('play: ' + e)); });
  hls.on(Hls.Events.LEVEL_SWITCHED, (_, d) => {
    const sw = probe.sw;
    (probe.levelSwitched = probe.levelSwitched || []).push(d.level);
    if (sw.state === 'requested' && d.level === sw.to.index) {
      switchedSeen = true; sw.levelSwitchedAtTime = v.currentTime;
      // hls.js fires FRAG_CHANGED (playhead entered a fragment) just before LEVEL_SWITCHED
      if (lastFragLevel === d.level) switchConfirmed('LEVEL_SWITCHED+FRAG_CHANGED level=' + d.level);
    }
  });
  hls.on(Hls.Events.FRAG_CHANGED, (_, d) => {
    lastFragLevel = d.frag.level;
    if (switchedSeen && d.frag.level === probe.sw.to.index) switchConfirmed('LEVEL_SWITCHED+FRAG_CHANGED level=' + d.frag.level);
  });
  hls.loadSource(CFG.src);
  hls.attachMedia(v);
`;

const dashAdapter = `
  const ev = dashjs.MediaPlayer.events;
  const player = dashjs.MediaPlayer().create();
  probe.version = player.getVersion();
  const rep = (r) => r && ({ key: r.id, id: r.id, index: r.index, width: r.width, height: r.height,
                             bitrate: r.bandwidth });
  const levels = () => player.getRepresentationsByType('video').map(rep);
  const current = () => rep(player.getCurrentRepresentationForType('video'));
  const requestSwitch = (t) => {
    player.updateSettings({ streaming: { abr: { autoSwitchBitrate: { video: false } } } });
    player.setRepresentationForTypeById('video', t.id);
  };
  player.on(ev.ERROR, (e) => { const er = e.error || {};
    fatal('dash/ERROR code=' + er.code + ' ' + (er.message || JSON.stringify(er)).slice(0, 300) + ' fatal=true'); });
  player.on(ev.PLAYBACK_ERROR, (e) => fatal('dash/PLAYBACK_ERROR ' + String(e.error && (e.error.message || e.error.code)) + ' fatal=true'));
  player.on(ev.FRAGMENT_LOADING_COMPLETED, () => probe.frags++);
  player.on(ev.STREAM_INITIALIZED, () => { try { probe.levels = levels(); } catch (e) {} });
  player.on(ev.QUALITY_CHANGE_RENDERED, (e) => {
    if (e.mediaType !== 'video') return;
    (probe.rendered = probe.rendered || []).push(e.newRepresentation && e.newRepresentation.id);
    const sw = probe.sw;
    if (sw.state === 'requested' && e.newRepresentation && e.newRepresentation.id === sw.to.id) {
      const c = player.getCurrentRepresentationForType('video');
      if (c && c.id === sw.to.id) switchConfirmed('QUALITY_CHANGE_RENDERED id=' + c.id);
      else sw.message = 'QUALITY_CHANGE_RENDERED for target but current representation is ' + (c && c.id);
    }
  });
  player.initialize(v, new URL(CFG.src, location.href).href, true);
`;

const page_html = `<!doctype html><html><body style="margin:0;background:#000">
<video id="v" muted autoplay playsinline width="640" height="360"></video>
<script>${lib}</script>
<script>
window.addEventListener('error', (e) => { if (window.probe) probe.errors.push('pageerror: ' + e.message); });
${common}
${player === 'dash' ? dashAdapter : hlsAdapter}
</script></body></html>`;

let st = { src, player, errors: ['no status collected'] };
const requests = [];
let pageOpened = 0;
let ctx = null, userDataDir = null, done = false, harnessError = null;
const evaluate = (fails) => {
  const errs = [...(st.errors || [])];
  const sw = st.switch || {};
  if (!(st.played >= minSeconds || doSwitch)) fails.push(`played ${(st.played ?? 0).toFixed?.(2)} < ${minSeconds} s`);
  if (!(st.frames >= MIN_FRAMES)) fails.push(`frames ${st.frames} < ${MIN_FRAMES}`);
  if (st.fatal) fails.push('fatal player error: ' + errs.filter(e => /fatal=true/.test(e)).join('; '));
  if (doSwitch) {
    if (sw.state !== 'confirmed') fails.unshift(`switch not confirmed (state=${sw.state}${sw.message ? ': ' + sw.message : ''})`);
    else if (!(st.playedAfterSwitch >= minSeconds))
      fails.push(`played after switch ${st.playedAfterSwitch} < ${minSeconds} s`);
  }
  return fails;
};
const finish = async (rc, fails) => {
  if (done) return; done = true;
  // Requests from 2 s before to 8 s after each stall's start.
  const around = (st.stallsAt || []).flatMap(at => requests.filter(q => {
    const t = q.at + pageOpened; return t >= at - 2000 && t <= at + 8000; }));
  if (around.length) st.requestsAroundStalls = around.slice(0, 300);
  const logged = (st.stallsAt || []).flatMap(at => consoleLog.filter(l => l.t >= at - 3000 && l.t <= at + 7000)
                                                             .map(l => `${l.t - at} ${l.text}`));
  if (logged.length) st.playerLogAroundStalls = logged.slice(0, 3000);
  if (logFile) {
    try {
      fs.writeFileSync(logFile, [...consoleLog.map(l => `${l.t - pageOpened} log ${l.text}`),
                                 ...requests.map(q => `${q.at} req ${q.ms}ms ${q.status} ${q.url}`)]
        .sort((a, b) => parseInt(a) - parseInt(b)).join('\n') + '\n');
    } catch (e) { console.error('--log:', e.message); }
  }
  console.log(JSON.stringify({ ...st, result: rc === 0 ? 'pass' : 'fail', failures: fails }));
  console.log(rc === 0 ? 'PLAYED' : 'DID NOT PLAY');
  try { if (ctx) await Promise.race([ctx.close(), new Promise(r => setTimeout(r, 5000))]); } catch {}
  try { if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true }); } catch {}
  process.exit(rc);
};
// Hard watchdog: covers a hung browser launch / navigation / evaluate.
setTimeout(() => finish(1, [...evaluate([]), `watchdog: run exceeded ${Number(tmo) + 30} s`]),
           (Number(tmo) + 30) * 1000).unref();

try {
  userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hw-chromium-'));
  ctx = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    // The HTTPS tests use a self-signed certificate.
    ignoreHTTPSErrors: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync',
           '--autoplay-policy=no-user-gesture-required'],
    viewport: { width: 640, height: 360 },
  });
  const page = ctx.pages()[0] || await ctx.newPage();
  page.on('pageerror', e => console.log('pageerror:', e.message));
  if (debug) page.on('console', m => consoleLog.push({ t: Date.now(), text: m.text().slice(0, 300) }));
  // Every media request (ms since the page opened, status, duration): the ones around a stall
  // are reported, to tell a server that answered late from a player that asked late.
  pageOpened = Date.now();
  const logRequest = (r, status) => {
    const timing = r.timing();
    requests.push({ at: Math.round(timing.startTime - pageOpened), ms: Math.round(timing.responseEnd),
                    status, url: r.url().replace(base, '') });
  };
  page.on('requestfinished', async r => { const resp = await r.response().catch(() => null);
                                          logRequest(r, resp ? resp.status() : 0); });
  page.on('requestfailed', r => logRequest(r, 'failed: ' + (r.failure() || {}).errorText));
  await page.route(`${base}/__player.html`, r => r.fulfill({ body: page_html, contentType: 'text/html' }));
  await page.goto(`${base}/__player.html`);
  // While a route is set, Playwright intercepts every request of the page and lets it go on
  // from Node: tens of ms per media request on a busy machine, which no real viewer pays.
  await page.unrouteAll();
  const deadline = Date.now() + Number(tmo) * 1000;
  while (Date.now() < deadline) {
    st = await page.evaluate(({ src, player }) => {
      const v = document.querySelector('video');
      const q = v.getVideoPlaybackQuality();
      const sw = { ...probe.sw };
      const r = (x) => x === undefined ? undefined : +x.toFixed(3);
      return { src, player, version: probe.version, currentTime: r(v.currentTime),
               played: r(probe.played), w: v.videoWidth, h: v.videoHeight, sizes: probe.sizes,
               frames: q.totalVideoFrames, dropped: q.droppedVideoFrames, frags: probe.frags,
               levels: probe.levels.map(l => ({ ...l, size: l.width + 'x' + l.height })),
               switch: probe.sw.state === 'off' ? undefined : {
                 ...sw, sizeAfter: sw.state === 'confirmed' ? v.videoWidth + 'x' + v.videoHeight : undefined,
                 // informational: the decoded picture now has the target rendition's declared height
                 sizeMatchesTarget: sw.state === 'confirmed' && sw.to && sw.to.height ? v.videoHeight === sw.to.height : undefined },
               playedAfterSwitch: sw.state === 'confirmed' ? r(probe.played - sw.confirmedAtPlayed) : undefined,
               levelSwitched: probe.levelSwitched, rendered: probe.rendered,
               stalls: probe.stalls, stalledMs: Math.round(probe.stalledMs),
               latencyMs: probe.latencyMs, hlsLatency: probe.hlsLatency, stallsAt: probe.stallsAt,
               stallMs: probe.stallMs, stallingMs: stallingMs(),
               fatal: probe.fatal, errors: probe.errors };
    }, { src, player });
    if (st.fatal) break;
    const sw = st.switch;
    if (sw && ['impossible', 'failed'].includes(sw.state)) break;
    if (evaluate([]).length === 0 && (!untilFile || fs.existsSync(untilFile))) break;
    await page.waitForTimeout(250);
  }
  if (shot) await page.screenshot({ path: shot }).catch(e => console.log('screenshot failed:', e.message));
} catch (e) {
  harnessError = 'harness: ' + (e && e.message || e);
  st.errors = [...(st.errors || []), harnessError];
}
const fails = evaluate(harnessError ? [harnessError] : []);
await finish(fails.length === 0 ? 0 : 1, fails);
