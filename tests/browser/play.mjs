// Plays a Headwater HLS stream in Debian's headless Chromium with hls.js and checks that real
// playback advances. Usage: node play.mjs BASE_URL PATH [SECONDS] [TIMEOUT_S] [SCREENSHOT]
// Exit 0 = played at least SECONDS of media and decoded frames, with no fatal hls.js error.
// The player page is served by request interception on the server's own origin, so the
// test needs no extra web server and exercises the same-origin path a real site would.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const [base, src, minT = '5', tmo = '60', shot = ''] = process.argv.slice(2);
const here = path.dirname(fileURLToPath(import.meta.url));
const hlsJs = fs.readFileSync(path.join(here, 'node_modules/hls.js/dist/hls.min.js'), 'utf8');
const page_html = `<!doctype html><html><body style="margin:0;background:#000">
<video id="v" muted autoplay playsinline width="640" height="360"></video>
<script>${hlsJs}</script>
<script>
  window.probe = { errors: [], frags: 0, version: Hls.version };
  const v = document.getElementById('v');
  v.addEventListener('playing', () => { if (probe.playStart === undefined) probe.playStart = v.currentTime; });
  const hls = new Hls({ lowLatencyMode: false });
  hls.on(Hls.Events.ERROR, (_, d) => probe.errors.push(d.type + '/' + d.details + ' fatal=' + d.fatal));
  hls.on(Hls.Events.FRAG_LOADED, () => probe.frags++);
  hls.loadSource(${JSON.stringify(src)});
  hls.attachMedia(v);
  hls.on(Hls.Events.MANIFEST_PARSED, () => v.play().catch(e => probe.errors.push('play: ' + e)));
</script></body></html>`;

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hw-chromium-'));
const ctx = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync',
         '--autoplay-policy=no-user-gesture-required'],
  viewport: { width: 640, height: 360 },
});
let rc = 1;
try {
  const page = ctx.pages()[0] || await ctx.newPage();
  page.on('pageerror', e => console.log('pageerror:', e.message));
  await page.route(`${base}/__player.html`, r => r.fulfill({ body: page_html, contentType: 'text/html' }));
  await page.goto(`${base}/__player.html`);
  const deadline = Date.now() + Number(tmo) * 1000;
  let st;
  while (Date.now() < deadline) {
    st = await page.evaluate(() => {
      const v = document.querySelector('video');
      const q = v.getVideoPlaybackQuality();
      return { currentTime: v.currentTime,
               played: probe.playStart === undefined ? 0 : v.currentTime - probe.playStart,
               w: v.videoWidth, h: v.videoHeight, frames: q.totalVideoFrames,
               dropped: q.droppedVideoFrames, frags: probe.frags, errors: probe.errors,
               version: probe.version };
    });
    if (st.played >= Number(minT) && st.frames >= 100) break;
    if (st.errors.some(e => /fatal=true/.test(e))) break;
    await page.waitForTimeout(250);
  }
  if (shot) await page.screenshot({ path: shot });
  console.log(JSON.stringify({ src, ...st }));
  const fatal = st.errors.some(e => /fatal=true/.test(e));
  rc = (st.played >= Number(minT) && st.frames >= 100 && !fatal) ? 0 : 1;
  console.log(rc === 0 ? 'PLAYED' : 'DID NOT PLAY');
} finally {
  await ctx.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
process.exit(rc);
