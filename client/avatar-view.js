// The avatar drawn in the page (three.js, WebGL), driven by the server's rotation frames.
//
// The server retargets once per channel and sends, per frame, the local rotations of the bones it
// drives (order: ready.bones) and the hips' displacement; once, in `ready`, the avatar's URL (the
// glTF it retargets onto), the rotation that turned the file to canonical axes, its camera and its
// background. With those this page draws the picture the server's pyrender would: same mesh, same
// bind pose, same camera, same lights (tests/test_browser_webgl.py checks the silhouettes match).
//
// Frames are played on the stream's clock, behind a small jitter buffer: the page keeps the
// earliest arrival offset (arrival - t) seen lately and plays at `now - offset - JITTER_MS`,
// interpolating (slerp) between the two frames around that time, at the display's rate.
import * as THREE from "three";
import {GLTFLoader} from "./vendor/three/examples/jsm/loaders/GLTFLoader.js";

const JITTER_MS = 40;  // one frame at 25 fps: absorbs the server's and the network's jitter
const OFFSET_WINDOW_MS = 2000;  // how long an early arrival sets the clock offset
const KEEP = 64;  // frames buffered at most (~2.5 s)
const KINDS = ["rest", "transition", "sign", "fingerspelling"];
// The server's lights (server/avatar/render.py _LIGHTS, _AMBIENT): direction of travel, intensity.
const LIGHTS = [[[0.45, -0.55, -0.70], 3.2], [[-0.70, -0.15, -0.70], 1.4], [[0.10, -0.35, 0.93], 1.6]];
const AMBIENT = 0.28;
// The non-manual track (docs/protocol.md, "Non-manual track"), in its channel order.
const FACE = ["brow_raise", "brow_furrow", "blink", "squint", "head_nod", "head_shake", "head_tilt",
              "mouth_open", "mouth_spread", "mouth_round", "breath", "sway"];
const FI = Object.fromEntries(FACE.map((c, i) => [c, i]));
const NEUTRAL = new Float32Array(FACE.length);

// A binary rotation frame (docs/protocol.md, "Rotation frames") → {unit, segment, frame, t, kind,
// rotations: Float32Array(bones × 4), root: Float32Array(3), face: Float32Array | null}; null when
// it is not one. `face` is the optional trailer: float16 count N, then N float16 values.
export function decodeRotations(buffer) {
  const view = new DataView(buffer);
  if (buffer.byteLength < 28 || String.fromCharCode(...new Uint8Array(buffer, 0, 4)) !== "SSRF") return null;
  const bones = view.getUint16(24, true), channels = view.getUint16(26, true);
  const size = 28 + (bones * 4 + 3) * 2;
  if (channels !== 4 || buffer.byteLength < size) return null;
  let face = null;
  if (buffer.byteLength > size) {
    const n = buffer.byteLength >= size + 2 ? half(view.getUint16(size, true)) : -1;
    if (buffer.byteLength !== size + 2 + 2 * n) return null;
    face = new Float32Array(n);
    for (let i = 0; i < n; i++) face[i] = half(view.getUint16(size + 2 + 2 * i, true));
  }
  const values = new Float32Array(bones * 4 + 3);
  for (let i = 0; i < values.length; i++) values[i] = half(view.getUint16(28 + 2 * i, true));
  return {kind: KINDS[view.getUint8(5)], segment: view.getInt16(6, true), unit: view.getUint32(8, true),
          frame: view.getUint32(12, true), t: view.getFloat64(16, true),
          rotations: values.subarray(0, bones * 4), root: values.subarray(bones * 4), face};
}

// A JSON rotation frame → the same shape as decodeRotations.
export function fromJSON(m) {
  return {...m, rotations: Float32Array.from(m.rotations.flat()), root: Float32Array.from(m.root),
          face: m.face ? Float32Array.from(m.face) : null};
}

function half(h) {  // IEEE 754 binary16 → number
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

export class AvatarView {
  constructor(canvas) {
    this.canvas = canvas;
    // preserveDrawingBuffer: the picture can be read back (tests, screenshots) between draws.
    this.renderer = new THREE.WebGLRenderer({canvas, antialias: false, preserveDrawingBuffer: true});
    this.renderer.setPixelRatio(1);
    this.scene = new THREE.Scene();
    this.frames = [];  // buffered frames, oldest first
    this.offset = null;  // ms: earliest (arrival - t) of late
    this.offsetAt = 0;
    this.held = false;  // showing a frame given by hold(): live frames wait
    this.draws = 0;  // pictures drawn
    this.movedAt = 0;  // performance.now() of the last draw whose pose differed from the one before
    this.drawnUnit = 0;  // unit of the newest frame in the last picture
    this.bones = [];
    this._last = null;
  }

  // Load the avatar and set camera, lights and background from the ready message (once: a
  // reconnection's ready names the same avatar, and keeps the avatar already loaded).
  load(ready) {
    if (!this.loading) this.loading = this._load(ready);
    this.frames.length = 0;
    this.offset = null;
    return this.loading;
  }

  async _load(ready) {
    const a = ready.avatar;
    const gltf = await new GLTFLoader().loadAsync(a.url);
    const model = new THREE.Group();
    model.quaternion.fromArray(a.turn);  // the file's axes → canonical, as the server turned it
    model.add(gltf.scene);
    this.scene.add(model);
    let skinned = null;
    gltf.scene.traverse((o) => { if (o.isSkinnedMesh && !skinned) skinned = o; });
    if (!skinned) throw new Error("the avatar has no skinned mesh");
    // The server drives the bind pose (inverse bind matrices), whatever pose the nodes were saved in.
    skinned.skeleton.pose();
    gltf.scene.traverse((o) => {
      if (!o.isMesh) return;
      o.frustumCulled = false;  // the bind-pose bounds do not hold once the arms move
      // Matte Lambert in vertex colours, one-sided: what server/avatar/shaders/mesh.frag draws.
      o.material = new THREE.MeshLambertMaterial({vertexColors: !!o.geometry.attributes.color});
    });
    // Bones by their index in the skin's joint list: the server's rig numbers them so.
    const joints = skinned.skeleton.bones;
    this.bones = a.joints.map((j) => joints[j] || null);
    model.updateMatrixWorld(true);
    this._loadFace(a.face, joints, gltf.scene);
    const hips = a.hips >= 0 ? joints[a.hips] : null;
    this.hips = hips ? {bone: hips, rest: hips.position.clone()} : null;
    const c = a.camera;
    this.camera = new THREE.PerspectiveCamera(THREE.MathUtils.radToDeg(c.yfov), 1, c.znear, c.zfar);
    this.camera.position.fromArray(c.position);  // looking down -z, as pyrender's camera
    this.setBackground(a.background);
    this.scene.add(new THREE.AmbientLight(0xffffff, AMBIENT * Math.PI));  // three divides ambient by pi, the server does not
    for (const [travel, intensity] of LIGHTS) {
      const light = new THREE.DirectionalLight(0xffffff, intensity);
      light.position.set(-travel[0], -travel[1], -travel[2]);  // shines from here towards the target (origin)
      this.scene.add(light, light.target);
    }
    this.resize();
    this.renderer.setAnimationLoop(() => this._tick());
  }

  // The server's background: its values go to the framebuffer unconverted, as pyrender's do.
  setBackground(rgb) {
    this.scene.background = new THREE.Color().setRGB(rgb[0], rgb[1], rgb[2], THREE.SRGBColorSpace);
    this._last = null;
  }

  resize(width, height) {
    const w = width || this.canvas.width, h = height || this.canvas.height;
    this.renderer.setSize(w, h, false);
    if (this.camera) { this.camera.aspect = w / h; this.camera.updateProjectionMatrix(); }
    this._last = null;
  }

  // A live frame (decoded) as it arrives.
  push(frame) {
    const now = performance.now(), lag = now - frame.t * 1000;
    if (this.offset === null || lag < this.offset || now - this.offsetAt > OFFSET_WINDOW_MS) {
      this.offset = lag;
      this.offsetAt = now;
    }
    const f = this.frames;
    if (f.length && frame.frame <= f[f.length - 1].frame) f.length = 0;  // a new stream: start again
    f.push(frame);
    if (f.length > KEEP) f.splice(0, f.length - KEEP);
  }

  // Show one frame now, without the clock, until release() (tests compare it with the server's render).
  hold(frame) {
    this.held = true;
    this._apply(frame, frame, 0);
    this.renderer.render(this.scene, this.camera);
    this.draws++;
  }

  release() { this.held = false; this._last = null; }

  _tick() {
    if (this.held || !this.frames.length || this.camera === undefined) return;
    const f = this.frames, play = performance.now() - this.offset - JITTER_MS;
    while (f.length > 2 && f[1].t * 1000 <= play) f.shift();  // keep the frame just before `play`
    let a = f[0], b = f[0], alpha = 0;
    if (f.length > 1 && f[0].t * 1000 < play) {
      b = f[1];
      alpha = Math.min(1, (play - a.t * 1000) / Math.max(1, (b.t - a.t) * 1000));
    }
    const key = a.frame + ":" + b.frame + ":" + alpha.toFixed(3);
    if (key === this._last) return;  // nothing new to draw
    const moved = this._apply(a, b, alpha);
    if (!moved && this._last !== null) { this._last = key; return; }  // the same pose (at rest): the same picture
    this._last = key;
    this.renderer.render(this.scene, this.camera);
    this.draws++;
    this.drawnUnit = b.unit;
    if (moved) this.movedAt = performance.now();
  }

  // Set the bones to a, b slerped by alpha; returns whether any bone turned.
  _apply(a, b, alpha) {
    const qa = new THREE.Quaternion(), qb = new THREE.Quaternion();
    let moved = false;
    this.bones.forEach((bone, i) => {
      if (!bone) return;
      qa.fromArray(a.rotations, 4 * i).normalize();
      qb.fromArray(b.rotations, 4 * i).normalize();
      qa.slerp(qb, alpha);
      if (!moved && 1 - Math.abs(qa.dot(bone.quaternion)) > 1e-7) moved = true;
      bone.quaternion.copy(qa);
    });
    if (this._applyFace(a.face, b.face, alpha)) moved = true;
    if (this.hips) {  // canonical displacement → the hips' parent's axes
      const d = new THREE.Vector3().fromArray(a.root).lerp(new THREE.Vector3().fromArray(b.root), alpha);
      const q = new THREE.Quaternion();
      this.hips.bone.parent.getWorldQuaternion(q);
      this.hips.bone.position.copy(this.hips.rest).add(d.applyQuaternion(q.invert()));
    }
    return moved;
  }

  // The face bones named by ready.avatar.face, with their rest and bind (scene, canonical) transforms,
  // and the meshes with morph targets (the channels no bone shows: ready.avatar.face.morphs).
  _loadFace(spec, joints, scene) {
    this.face = null;
    if (!spec) return;
    const bones = {};
    for (const [name, j] of Object.entries(spec.joints)) {
      const bone = joints[j];
      if (!bone) continue;
      bones[name] = {bone, restQ: bone.quaternion.clone(), restM: bone.matrix.clone(),
                     bindW: bone.matrixWorld.clone(), bindQ: bone.getWorldQuaternion(new THREE.Quaternion())};
    }
    const morphed = [];
    scene.traverse((o) => { if (o.morphTargetDictionary && o.morphTargetInfluences) morphed.push(o); });
    this.face = {bones, pivots: spec.pivots || {}, unit: spec.unit || 0.07, angles: spec.head_angles,
                 lid: spec.eyelid_angle || 0, morphs: spec.morphs || {}, morphed, shown: null};
  }

  // The non-manual track on the face bones, as server/avatar/face.py does on the server's rig:
  // head/neck/chest/spine turn (canonical axes, in each bone's own frame), then brows, jaw and
  // eyelids get a bind-space deformation E (bone.matrix = rest · bind⁻¹ · E · bind). Returns
  // whether anything changed.
  _applyFace(fa, fb, alpha) {
    const F = this.face;
    if (!F) return false;
    if (!fa) fa = fb = NEUTRAL;  // a frame without the track (an older server): the face at rest
    const v = FACE.map((_, i) => (fa[i] || 0) + ((fb ? fb[i] || 0 : fa[i] || 0) - (fa[i] || 0)) * alpha);
    const key = v.map((x) => x.toFixed(4)).join(",");
    if (key === F.shown) return false;
    F.shown = key;
    const B = F.bones, X = new THREE.Vector3(1, 0, 0), Y = new THREE.Vector3(0, 1, 0), Z = new THREE.Vector3(0, 0, 1);
    const q = (axis, angle) => new THREE.Quaternion().setFromAxisAngle(axis, angle);
    const turn = (b, r) => {  // bone.quaternion = rest · (bind⁻¹ · r · bind)
      const local = b.bindQ.clone().invert().multiply(r).multiply(b.bindQ);
      b.bone.quaternion.copy(b.restQ).multiply(local);
    };
    const [nod, shake, tilt] = ["head_nod", "head_shake", "head_tilt"].map((c) => v[FI[c]] * F.angles[c]);
    for (const [name, part] of (B.neck ? [["neck", 0.4], ["head", 0.6]] : [["head", 1.0]])) {
      if (B[name]) turn(B[name], q(Y, part * shake).multiply(q(X, part * nod)).multiply(q(Z, -part * tilt)));
    }
    const chest = B.upperChest || B.chest;
    if (chest) turn(chest, q(X, -0.02 * v[FI.breath]));
    if (B.spine) turn(B.spine, q(Z, 0.03 * v[FI.sway]));
    const u = F.unit, T = (x, y, z) => new THREE.Matrix4().makeTranslation(x, y, z);
    const about = (p, m) => T(p[0], p[1], p[2]).multiply(m).multiply(T(-p[0], -p[1], -p[2]));
    const shape = (name, e) => {
      const b = B[name];
      if (!b) return;
      b.bone.matrixAutoUpdate = false;  // a deformation may scale: set the matrix itself
      b.bone.matrix.copy(b.restM).multiply(b.bindW.clone().invert().multiply(e).multiply(b.bindW));
    };
    const raise = v[FI.brow_raise], furrow = v[FI.brow_furrow];
    for (const [name, side] of [["browLeft", 1], ["browRight", -1]]) {
      const p = F.pivots[name];
      if (!p) continue;
      const slant = about(p, new THREE.Matrix4().makeRotationAxis(Z, side * 0.25 * furrow));
      shape(name, T(-side * 0.06 * u * furrow, (0.20 * raise - 0.08 * furrow) * u, (0.04 * raise + 0.06 * furrow) * u).multiply(slant));
    }
    if (F.pivots.jaw) {
      const o = v[FI.mouth_open], s = v[FI.mouth_spread], r = v[FI.mouth_round];
      const scale = new THREE.Matrix4().makeScale(Math.max(0.3, 1 + 0.35 * s - 0.40 * r), 1 + 2.2 * o + 0.8 * r, 1);
      shape("jaw", T(0, -0.05 * u * o, 0).multiply(about(F.pivots.jaw, scale)));
    }
    const close = Math.max(v[FI.blink], 0.5 * v[FI.squint]);
    for (const name of ["eyelidLeft", "eyelidRight"]) {
      const p = F.pivots[name];
      if (p) shape(name, about(p, new THREE.Matrix4().makeRotationAxis(X, F.lid * close)));  // turned down over the eye
    }
    // Morph targets, as server/avatar/face.py's weights(): Σ channel value × weight, clipped to [0, 1].
    const weights = {};
    for (const [channel, binds] of Object.entries(F.morphs)) {
      for (const [target, w] of binds) weights[target] = (weights[target] || 0) + v[FI[channel]] * w;
    }
    for (const mesh of F.morphed) {
      for (const [target, w] of Object.entries(weights)) {
        const k = mesh.morphTargetDictionary[target];
        if (k !== undefined) mesh.morphTargetInfluences[k] = Math.min(1, Math.max(0, w));
      }
    }
    return true;
  }
}

// Whether this browser can draw the avatar (WebGL 2, or WebGL 1, with a context that really opens).
export function webglAvailable() {
  try {
    const c = document.createElement("canvas");
    return !!(c.getContext("webgl2") || c.getContext("webgl"));
  } catch (e) {
    return false;
  }
}
