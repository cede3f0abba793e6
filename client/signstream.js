// SignStream browser client (plain JS, no build step), shared by index.html and kiosk.html. Three
// ways to show the signer, the first that works:
// - "webgl": the page draws the avatar (three.js, client/avatar-view.js) from the /ws rotation
//   frames (hello.frames = "rotations"): the server retargets once per channel and sends ~8.5 kB/s;
// - "video": WebRTC to /offer (the server renders and encodes; a data channel speaks the /ws JSON
//   messages), where WebGL is missing or with ?render=video; for a channel of a cluster with Janus,
//   the channel's one video through Janus (/sfu/offer, /sfu/answer) and the messages on /ws;
// - "points": where RTCPeerConnection is missing too (or transport "ws"), /ws pose frames drawn as dots.
"use strict";

const CHANNEL_LABEL = "signstream";

// Wait until ICE gathering is complete, so the offer carries its candidates (no trickle on /offer).
function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    pc.addEventListener("icegatheringstatechange", () => { if (pc.iceGatheringState === "complete") resolve(); });
    setTimeout(resolve, 3000);  // go with what we have
  });
}

const KEEPALIVE_MS = 60000;  // a ping now and then keeps a watching-only session from the idle timeout

// Opens a session. opts: {server, hello, video, canvas, scene, render, onMessage(m), onState(text),
// onMode(mode), onClose(), transport}. hello may name a channel (shared stream) and a background
// (#RRGGBB). scene is the <canvas> the avatar is drawn on; render "video" forces the WebRTC video
// (render "webgl" is the default where WebGL works); transport "ws" forces /ws without WebGL.
// Returns {send(msg), close(), kind} once the offer was answered (or the socket opened); onClose is
// called once when the connection is lost or closed.
async function connectSignStream(opts) {
  const base = opts.server || location.origin;
  let closed = false, timer = null;
  const done = opts.onClose || (() => {});
  opts = {...opts, onClose: () => { if (!closed) { closed = true; clearInterval(timer); done(); } }};
  const view = opts.render !== "video" && opts.transport !== "ws" && opts.scene ? await avatarModule() : null;
  let conn;
  if (view) conn = await connectAvatar(base, opts, view);
  else if (opts.transport !== "ws" && typeof RTCPeerConnection === "function") {
    conn = (opts.hello.channel && await connectSfu(base, opts)) || await connectWebRTC(base, opts);
  }
  else conn = await connectWebSocket(base, opts);
  if (opts.onMode) opts.onMode(conn.kind === "webgl" ? "webgl" : conn.kind === "webrtc" ? "video" : "points");
  if (!closed) timer = setInterval(() => conn.send({type: "ping"}), KEEPALIVE_MS);
  return conn;
}

async function connectWebRTC(base, opts) {
  const pc = new RTCPeerConnection({iceServers: []});
  const channel = pc.createDataChannel(CHANNEL_LABEL);
  const queued = [];
  pc.addTransceiver("video", {direction: "recvonly"});
  opts.video.hidden = false; if (opts.canvas) opts.canvas.hidden = true; if (opts.scene) opts.scene.hidden = true;
  pc.ontrack = (e) => { opts.video.srcObject = e.streams[0] || new MediaStream([e.track]); opts.video.play().catch(() => {}); };
  pc.onconnectionstatechange = () => {
    opts.onState("WebRTC " + pc.connectionState);
    if (["failed", "closed"].includes(pc.connectionState)) opts.onClose();
  };
  channel.onopen = () => { queued.splice(0).forEach((s) => channel.send(s)); };
  channel.onmessage = (e) => opts.onMessage(JSON.parse(e.data));
  channel.onclose = () => { opts.onState("closed"); opts.onClose(); pc.close(); };
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const r = await fetch(base + "/offer", {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({sdp: pc.localDescription.sdp, type: "offer", ...opts.hello})});
  const body = await r.json();
  if (!r.ok) { pc.close(); throw new Error(`${body.code}: ${body.message}`); }
  await pc.setRemoteDescription(body);
  // Leaving the page closes the connection now (the data channel's close tells the server), rather
  // than leaving the server to notice through ICE consent timeouts ~30 s later.
  addEventListener("pagehide", () => pc.close(), {once: true});
  return {
    kind: "webrtc", pc,
    send(msg) { const s = JSON.stringify(msg); if (channel.readyState === "open") channel.send(s); else queued.push(s); },
    close() { pc.close(); opts.onClose(); },
  };
}

// A channel's video through the cluster's SFU (docs/cluster.md "Video through Janus"): null where
// the server has none (/sfu/offer 404), so the page takes /offer. Captions and statuses travel on
// /ws, opened first (its hello opens the channel, whose owner then publishes the video). Janus makes
// the offer and this page answers; when the video's connection ends (a new owner after a failover)
// the page subscribes again while /ws stays open.
async function connectSfu(base, opts) {
  const {background, ...hello} = opts.hello;
  const probe = await fetch(base + "/sfu/offer", {method: "POST", headers: {"Content-Type": "application/json"}, body: "{}"});
  if (probe.status === 404) return null;  // no Janus here (a 400 says there is: the probe names no channel)
  const ws = new WebSocket(base.replace(/^http/, "ws") + "/ws");
  ws.binaryType = "arraybuffer";
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error("WebSocket failed")); });
  const early = [];  // messages that come while the video is being set up
  ws.onmessage = (e) => { if (typeof e.data === "string") early.push(JSON.parse(e.data)); };
  ws.send(JSON.stringify({type: "hello", ...hello, frames: "none", idle_frames: false}));  // the video shows the signing
  let pc = null, open = true;
  const subscribe = async () => {
    const r = await fetch(base + "/sfu/offer", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({channel: hello.channel, ...(hello.token ? {token: hello.token} : {})})});
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(`${body.code}: ${body.message}`);
    const next = pc = new RTCPeerConnection({iceServers: []});
    next.ontrack = (e) => { opts.video.srcObject = e.streams[0] || new MediaStream([e.track]); opts.video.play().catch(() => {}); };
    next.onconnectionstatechange = () => {
      opts.onState("WebRTC (Janus) " + next.connectionState);
      if (["failed", "closed"].includes(next.connectionState) && next === pc && open) {
        next.close();
        setTimeout(() => again(), 500);
      }
    };
    await next.setRemoteDescription({type: "offer", sdp: body.sdp});
    await next.setLocalDescription(await next.createAnswer());
    await gathered(next);
    const a = await fetch(base + "/sfu/answer", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({id: body.id, type: "answer", sdp: next.localDescription.sdp})});
    if (!a.ok) throw new Error("the video subscription was refused");
  };
  const again = () => subscribe().catch((e) => { opts.onState("video: " + e.message); if (open) setTimeout(again, 2000); });
  try { await subscribe(); } catch (e) { ws.close(); throw e; }
  opts.video.hidden = false; if (opts.canvas) opts.canvas.hidden = true; if (opts.scene) opts.scene.hidden = true;
  const close = () => { open = false; if (pc) pc.close(); ws.close(); };
  ws.onclose = () => { open = false; if (pc) pc.close(); opts.onState("closed"); opts.onClose(); };
  ws.onmessage = (e) => { if (typeof e.data === "string") opts.onMessage(JSON.parse(e.data)); };
  early.splice(0).forEach(opts.onMessage);
  addEventListener("pagehide", close, {once: true});
  return {kind: "webrtc", get pc() { return pc; }, send: (m) => ws.send(JSON.stringify(m)), close};
}

function connectWebSocket(base, opts) {
  const url = base.replace(/^http/, "ws") + "/ws";
  const ws = new WebSocket(url);
  const canvas = opts.canvas, ctx = canvas.getContext("2d");
  const {channel, background, ...hello} = opts.hello;  // /ws sessions are private and send no video
  opts.video.hidden = true; canvas.hidden = false; if (opts.scene) opts.scene.hidden = true;
  return new Promise((resolve, reject) => {
    ws.onopen = () => {
      ws.send(JSON.stringify({type: "hello", ...hello, format: "json"}));
      opts.onState("WebSocket (pose stream, no video)");
      resolve({kind: "websocket", send: (m) => ws.send(JSON.stringify(m)), close: () => ws.close()});
    };
    ws.onerror = () => reject(new Error("WebSocket failed"));
    ws.onclose = () => { opts.onState("closed"); opts.onClose(); };
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data);
      if (m.type === "pose") drawPose(ctx, canvas, m); else opts.onMessage(m);
    };
  });
}

// Canonical points (x right, y up; shoulders about 1 apart) as dots on the canvas.
function drawPose(ctx, canvas, m) {
  const w = canvas.width, h = canvas.height, s = w / 4;
  ctx.fillStyle = "#eef0f5"; ctx.fillRect(0, 0, w, h);
  ctx.fillStyle = "#1a237e";
  m.points.forEach((p, i) => {
    if (m.confidence[i] < 0.3) return;
    ctx.beginPath(); ctx.arc(w / 2 + p[0] * s, h * 0.35 - p[1] * s, 4, 0, 2 * Math.PI); ctx.fill();
  });
}

// The three.js module, where this browser has WebGL (null otherwise: the page falls back to video).
async function avatarModule() {
  try {
    const mod = await import("/client/avatar-view.js");
    return mod.webglAvailable() ? mod : null;
  } catch (e) {
    console.warn("no WebGL avatar:", e);
    return null;
  }
}

// The avatar drawn here: /ws with rotation frames (binary), captions and statuses on the same socket.
function connectAvatar(base, opts, mod) {
  const scene = opts.scene;
  const view = scene.avatarView || (scene.avatarView = new mod.AvatarView(scene));  // one per canvas
  const ws = new WebSocket(base.replace(/^http/, "ws") + "/ws");
  ws.binaryType = "arraybuffer";
  const {background, ...hello} = opts.hello;
  opts.video.hidden = true; if (opts.canvas) opts.canvas.hidden = true; scene.hidden = false;
  return new Promise((resolve, reject) => {
    ws.onopen = () => {
      ws.send(JSON.stringify({type: "hello", ...hello, frames: "rotations", format: "binary"}));
      opts.onState("WebSocket (avatar drawn here, WebGL)");
      resolve({kind: "webgl", view, send: (m) => ws.send(JSON.stringify(m)), close: () => ws.close()});
    };
    ws.onerror = () => reject(new Error("WebSocket failed"));
    ws.onclose = () => { opts.onState("closed"); opts.onClose(); };
    ws.onmessage = (e) => {
      if (typeof e.data !== "string") {
        const f = mod.decodeRotations(e.data);
        if (f) view.push(f);
        return;
      }
      const m = JSON.parse(e.data);
      if (m.type === "rotations") { view.push(mod.fromJSON(m)); return; }
      if (m.type === "ready" && m.avatar) {
        view.load(m).then(() => {
          if (background && /^#[0-9a-fA-F]{6}$/.test(background)) {
            view.setBackground([1, 3, 5].map((i) => parseInt(background.slice(i, i + 2), 16) / 255));
          }
        }).catch((err) => opts.onState("avatar failed: " + err.message));
      }
      opts.onMessage(m);
    };
  });
}
