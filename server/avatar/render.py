"""Offscreen rendering of the skinned avatar with pyrender, on one dedicated GL thread.

An OpenGL context belongs to the thread that made it, so every GL call runs on one worker thread
(a single-thread executor); callers skin on their own thread and hand over vertex arrays. Each
frame updates the mesh's vertex buffer in place (glBufferSubData) instead of rebuilding the mesh,
and reads back only the colour buffer (RGB, or RGBA for a transparent background), not depth.
Shading uses our own lean shaders (server/avatar/shaders) through pyrender's shader cache: on a
software rasteriser (llvmpipe) pyrender's PBR shader cost 4× as much for a matte figure.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from server.avatar.errors import RenderError
from server.avatar.gltf import Avatar
from server.avatar.skinning import Skinner, SkinMode

# Framing of the upper body, in shoulder widths: the picture is this tall, centred this far
# below the neck, so hands above the head and at the waist stay in view.
_FRAME_HEIGHT = 2.5
_FRAME_CENTRE_BELOW_NECK = 0.3
_YFOV = np.radians(20.0)  # a long lens: little perspective distortion of near hands


@dataclass(frozen=True)
class Camera:
    """A pinhole looking down −z from `position`; `project` gives pixel coordinates."""

    position: np.ndarray
    yfov: float
    width: int
    height: int
    znear: float
    zfar: float

    @property
    def pose(self) -> np.ndarray:
        m = np.eye(4)
        m[:3, 3] = self.position
        return m

    def projection(self) -> np.ndarray:
        a = self.width / self.height
        f = 1.0 / np.tan(self.yfov / 2)
        n, fa = self.znear, self.zfar
        return np.array([[f / a, 0, 0, 0], [0, f, 0, 0], [0, 0, (fa + n) / (n - fa), 2 * fa * n / (n - fa)], [0, 0, -1, 0]])

    def project(self, points: np.ndarray) -> np.ndarray:
        """World points (..., 3) → pixel (x right, y down) coordinates (..., 2)."""
        h = np.concatenate([points - self.position, np.ones(points.shape[:-1] + (1,))], axis=-1)
        clip = h @ self.projection().T
        ndc = clip[..., :2] / clip[..., 3:]
        return np.stack([(ndc[..., 0] + 1) / 2 * self.width, (1 - ndc[..., 1]) / 2 * self.height], axis=-1)


def frame_camera(avatar: Avatar, width: int, height: int) -> Camera:
    """A camera framing the avatar's upper body and signing space, whatever its size."""
    rig = avatar.rig
    heads = rig.bind[:, :3, 3]
    width_sh = float(np.linalg.norm(heads[rig.humanoid["leftUpperArm"]] - heads[rig.humanoid["rightUpperArm"]]))
    neck = heads[rig.humanoid["neck"]] if "neck" in rig.humanoid else (
        heads[rig.humanoid["leftUpperArm"]] + heads[rig.humanoid["rightUpperArm"]]) / 2
    tall = _FRAME_HEIGHT * width_sh * max(1.0, height / width)
    distance = tall / 2 / np.tan(_YFOV / 2)
    position = np.array([neck[0], neck[1] - _FRAME_CENTRE_BELOW_NECK * width_sh, neck[2] + distance])
    return Camera(position, float(_YFOV), width, height, znear=distance * 0.3, zfar=distance * 3)


def _light_pose(travel: tuple[float, float, float]) -> np.ndarray:
    """Pose of a directional light whose light travels along `travel` (pyrender shines down −z)."""
    z = -np.asarray(travel, float) / np.linalg.norm(travel)
    x = np.cross([0.0, 1.0, 0.0], z)
    x = x / np.linalg.norm(x) if np.linalg.norm(x) > 1e-6 else np.array([1.0, 0, 0])
    m = np.eye(4)
    m[:3, :3] = np.stack([x, np.cross(z, x), z], axis=1)
    return m


# Key from the viewer's upper left, fill from the right, and a back light that rims the fingers
# against the background; soft ambient so palms turned away still read.
_LIGHTS = (((0.45, -0.55, -0.70), 3.2), ((-0.70, -0.15, -0.70), 1.4), ((0.10, -0.35, 0.93), 1.6))
_AMBIENT = 0.28


class AvatarRenderer:
    """Renders world joint transforms of `avatar` to uint8 images (H, W, 3), or (H, W, 4) with alpha."""

    def __init__(self, avatar: Avatar, width: int = 512, height: int = 512,
                 background: tuple[float, ...] | list[float] = (0.93, 0.94, 0.96, 1.0), skinning: SkinMode = "rigid",
                 samples: int = 0) -> None:
        if width < 16 or height < 16:
            raise RenderError(f"image size {width}×{height} is too small")
        bg = tuple(float(c) for c in background)
        if len(bg) not in (3, 4):
            raise RenderError(f"background must be RGB or RGBA, got {bg}")
        self.background = bg if len(bg) == 4 else bg + (1.0,)
        self.rgba = self.background[3] < 1.0
        if samples not in (0, 2, 4, 8):
            raise RenderError(f"antialiasing samples must be 0, 2, 4 or 8, got {samples}")
        self.samples = samples
        self.width, self.height = width, height
        self.avatar = avatar
        self.skinner = Skinner(avatar.rig, avatar.mesh, skinning)
        self.camera = frame_camera(avatar, width, height)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="signstream-gl")
        self._closed = False
        try:
            self._pool.submit(self._setup).result()
        except RenderError:
            self._pool.shutdown()
            raise
        except Exception as exc:
            self._pool.shutdown()
            raise RenderError(f"could not create an OpenGL renderer: {type(exc).__name__}: {exc}") from exc

    # --- public, any thread -------------------------------------------------------------------

    def render(self, world: np.ndarray, morph: np.ndarray | None = None) -> np.ndarray:
        """Skin for world transforms (J, 4, 4) and morph target weights, and draw one frame."""
        return self.submit(world, morph).result()

    def submit(self, world: np.ndarray, morph: np.ndarray | None = None) -> Future:
        """Skin now (on this thread) and queue the draw on the GL thread: overlaps skinning and drawing.
        `morph`: weights in `skinner.morph_names` order (FaceRig.pose gives both)."""
        if self._closed:
            raise RenderError("renderer is closed")
        pos, nrm = self.skinner.skin(world, morph)
        return self._pool.submit(self._draw, pos.copy(), nrm.copy())

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._pool.submit(self._teardown).result()
            self._pool.shutdown()

    def __enter__(self) -> AvatarRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- GL thread ----------------------------------------------------------------------------

    def _setup(self) -> None:
        from server.avatar.gl import pyrender

        pr = pyrender()
        from OpenGL import GL

        self._gl = GL
        self._offscreen = pr.OffscreenRenderer(self.width, self.height)
        # Swap in our renderer (lean shaders, chosen MSAA, colour-only read-back).
        self._offscreen._renderer.delete()
        self._offscreen._renderer = _renderer_class(pr, self.samples)(self.width, self.height)
        sk = self.skinner
        n = len(sk.order)
        self._vertex_data = np.zeros((n, 10), dtype=np.float32)  # position, normal, colour: pyrender's layout
        self._vertex_data[:, 6:] = sk.colors
        pos, nrm = sk.skin(self.avatar.rig.bind)
        material = pr.MetallicRoughnessMaterial(baseColorFactor=[1.0, 1.0, 1.0, 1.0], metallicFactor=0.0,
                                                roughnessFactor=0.8, doubleSided=False)
        self._primitive = pr.Primitive(positions=pos.copy(), normals=nrm.copy(), color_0=sk.colors,
                                       indices=sk.indices.reshape(-1, 3), material=material, mode=4)
        mesh = pr.Mesh([self._primitive])
        self._scene = pr.Scene(bg_color=list(self.background), ambient_light=[_AMBIENT] * 3)
        self._scene.add(mesh)
        cam = self.camera
        self._scene.add(pr.PerspectiveCamera(yfov=cam.yfov, aspectRatio=cam.width / cam.height,
                                             znear=cam.znear, zfar=cam.zfar), pose=cam.pose)
        for travel, intensity in _LIGHTS:
            self._scene.add(pr.DirectionalLight(color=[1.0, 1.0, 1.0], intensity=intensity), pose=_light_pose(travel))
        self._flags = pr.RenderFlags.RGBA if self.rgba else pr.RenderFlags.NONE
        self._offscreen.render(self._scene, self._flags)  # uploads the mesh, compiles shaders

    def _draw(self, positions: np.ndarray, normals: np.ndarray) -> np.ndarray:
        gl = self._gl
        self._vertex_data[:, :3] = positions
        self._vertex_data[:, 3:6] = normals
        self._offscreen._platform.make_current()
        gl.glBindBuffer(gl.GL_ARRAY_BUFFER, self._primitive._buffers[0])
        gl.glBufferSubData(gl.GL_ARRAY_BUFFER, 0, self._vertex_data.nbytes, self._vertex_data)
        gl.glBindBuffer(gl.GL_ARRAY_BUFFER, 0)
        return self._offscreen.render(self._scene, self._flags)

    def _teardown(self) -> None:
        off = self._offscreen
        platform = off._platform
        platform.make_current()
        off._renderer.delete()
        if hasattr(platform, "_egl_display"):
            # pyrender's own delete also calls eglTerminate, and all contexts on a device share one
            # EGL display: that would break every other renderer in the process. Destroy ours only.
            from OpenGL import EGL

            EGL.eglMakeCurrent(platform._egl_display, EGL.EGL_NO_SURFACE, EGL.EGL_NO_SURFACE, EGL.EGL_NO_CONTEXT)
            EGL.eglDestroyContext(platform._egl_display, platform._egl_context)
        else:
            platform.delete_context()
        off._renderer = off._platform = None


def _renderer_class(pr, samples: int):
    """pyrender's Renderer with our lean shaders, `samples`× MSAA (0: none) and a colour-only read-back."""
    from OpenGL import GL

    shader_dir = str(Path(__file__).resolve().parent / "shaders")

    class SignStreamRenderer(pr.Renderer):
        def __init__(self, width: int, height: int) -> None:
            super().__init__(width, height)
            self._program_cache = pr.shader_program.ShaderProgramCache(shader_dir=shader_dir)

        def _configure_main_framebuffer(self) -> None:
            if self._main_fb is not None:
                return  # our viewport never changes size
            w, h = self.viewport_width, self.viewport_height
            self._main_cb, self._main_db = GL.glGenRenderbuffers(2)
            GL.glBindRenderbuffer(GL.GL_RENDERBUFFER, self._main_cb)
            GL.glRenderbufferStorage(GL.GL_RENDERBUFFER, GL.GL_RGBA8, w, h)
            GL.glBindRenderbuffer(GL.GL_RENDERBUFFER, self._main_db)
            GL.glRenderbufferStorage(GL.GL_RENDERBUFFER, GL.GL_DEPTH_COMPONENT24, w, h)
            self._main_fb = GL.glGenFramebuffers(1)
            GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, self._main_fb)
            GL.glFramebufferRenderbuffer(GL.GL_DRAW_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0, GL.GL_RENDERBUFFER, self._main_cb)
            GL.glFramebufferRenderbuffer(GL.GL_DRAW_FRAMEBUFFER, GL.GL_DEPTH_ATTACHMENT, GL.GL_RENDERBUFFER, self._main_db)
            if samples == 0:  # draw straight into the read-back target: no resolve blit
                self._main_fb_ms, self._main_cb_ms, self._main_db_ms = self._main_fb, self._main_cb, self._main_db
                self._main_fb_dims = (w, h)
                return
            self._main_cb_ms, self._main_db_ms = GL.glGenRenderbuffers(2)
            GL.glBindRenderbuffer(GL.GL_RENDERBUFFER, self._main_cb_ms)
            GL.glRenderbufferStorageMultisample(GL.GL_RENDERBUFFER, samples, GL.GL_RGBA8, w, h)
            GL.glBindRenderbuffer(GL.GL_RENDERBUFFER, self._main_db_ms)
            GL.glRenderbufferStorageMultisample(GL.GL_RENDERBUFFER, samples, GL.GL_DEPTH_COMPONENT24, w, h)
            self._main_fb_ms = GL.glGenFramebuffers(1)
            GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, self._main_fb_ms)
            GL.glFramebufferRenderbuffer(GL.GL_DRAW_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0, GL.GL_RENDERBUFFER, self._main_cb_ms)
            GL.glFramebufferRenderbuffer(GL.GL_DRAW_FRAMEBUFFER, GL.GL_DEPTH_ATTACHMENT, GL.GL_RENDERBUFFER, self._main_db_ms)
            self._main_fb_dims = (w, h)

        def _read_main_framebuffer(self, scene, flags):
            width, height = self._main_fb_dims
            if samples:  # resolve the multisampled image
                GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, self._main_fb_ms)
                GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, self._main_fb)
                GL.glBlitFramebuffer(0, 0, width, height, 0, 0, width, height, GL.GL_COLOR_BUFFER_BIT, GL.GL_NEAREST)
            GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, self._main_fb)
            fmt, ch = (GL.GL_RGBA, 4) if flags & pr.RenderFlags.RGBA else (GL.GL_RGB, 3)
            GL.glPixelStorei(GL.GL_PACK_ALIGNMENT, 1)
            buf = GL.glReadPixels(0, 0, width, height, fmt, GL.GL_UNSIGNED_BYTE)
            return np.frombuffer(buf, dtype=np.uint8).reshape(height, width, ch)[::-1]

    return SignStreamRenderer
