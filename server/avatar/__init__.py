"""The avatar: a rigged glTF/VRM humanoid, retargeted from 50-joint frames, skinned and rendered.

Modules: `humanoid` (bone names), `rotations` (rotation maths), `rig` (skeleton and forward
kinematics), `gltf` (loading and checking .glb/.gltf/.vrm files), `retarget`, `face` (the non-manual track on
the rig), `skinning`, `gl` (the one pyrender import), `render` (the GL thread), `painter` (the one
way from a pose frame to pixels) and `video` (file writing). The bundled avatar is made by
tools/avatar_build.py; the command line is server/avatar_cli.py.
"""
