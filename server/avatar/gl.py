"""The one place that imports pyrender: picks the OpenGL platform, patches numpy, builds renderers.

PyOpenGL binds its platform (EGL, OSMesa) once, at its first import, from PYOPENGL_PLATFORM; so the
platform is chosen before anything imports OpenGL: EGL when a headless EGL device initialises
(probed through ctypes, without PyOpenGL), else OSMesa when libOSMesa is installed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from types import ModuleType

from server.avatar.errors import RenderError

_EGL_PLATFORM_DEVICE_EXT = 0x313F
_pyrender: ModuleType | None = None


def _egl_device_works() -> bool:
    """Can EGL open a display on its first device (no X server needed)?"""
    try:
        egl = ctypes.CDLL("libEGL.so.1")
    except OSError:
        return False
    egl.eglGetProcAddress.restype = ctypes.c_void_p
    egl.eglGetProcAddress.argtypes = [ctypes.c_char_p]
    query_ptr = egl.eglGetProcAddress(b"eglQueryDevicesEXT")
    display_ptr = egl.eglGetProcAddress(b"eglGetPlatformDisplayEXT")
    if not query_ptr or not display_ptr:
        return False
    query = ctypes.CFUNCTYPE(ctypes.c_uint, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_int))(query_ptr)
    get_display = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p)(display_ptr)
    devices, count = (ctypes.c_void_p * 8)(), ctypes.c_int()
    if not query(8, devices, ctypes.byref(count)) or count.value < 1:
        return False
    device = int(os.environ.get("EGL_DEVICE_ID", "0"))
    if device >= count.value:
        return False
    display = get_display(_EGL_PLATFORM_DEVICE_EXT, devices[device], None)
    if not display:
        return False
    egl.eglInitialize.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)]
    egl.eglTerminate.argtypes = [ctypes.c_void_p]
    major, minor = ctypes.c_int(), ctypes.c_int()
    ok = bool(egl.eglInitialize(display, ctypes.byref(major), ctypes.byref(minor)))
    if ok:
        egl.eglTerminate(display)
    return ok


def choose_platform() -> str:
    """'egl' or 'osmesa' (a platform already set in PYOPENGL_PLATFORM is kept)."""
    if os.environ.get("PYOPENGL_PLATFORM"):
        return os.environ["PYOPENGL_PLATFORM"]
    if _egl_device_works():
        return "egl"
    if ctypes.util.find_library("OSMesa"):
        return "osmesa"
    raise RenderError("no OpenGL: EGL found no usable device and libOSMesa is not installed "
                      "(install libegl1 with Mesa, or libosmesa6)")


def pyrender() -> ModuleType:
    """Import pyrender once, on the chosen platform."""
    global _pyrender
    if _pyrender is None:
        platform = os.environ["PYOPENGL_PLATFORM"] = choose_platform()
        if platform == "osmesa":
            try:
                from OpenGL.osmesa import OSMesaCreateContextAttribs  # noqa: F401
            except ImportError:
                raise RenderError("EGL is unavailable and the OSMesa fallback needs PyOpenGL ≥ 3.1.5 "
                                  "(pyrender creates OSMesa core-profile contexts)") from None
        import numpy as np

        if not hasattr(np, "infty"):
            np.infty = np.inf  # pyrender 0.1.45 still uses the alias numpy 2 removed
        import pyrender as module

        _pyrender = module
    return _pyrender
