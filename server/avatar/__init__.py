"""The avatar: a rigged glTF/VRM humanoid, retargeted from 50-joint frames, skinned and rendered.

Modules: `humanoid` (bone names), `rotations` (rotation maths), `rig` (skeleton and forward
kinematics), `gltf` (loading and checking .glb/.gltf/.vrm files), `build` (our bundled avatar),
`retarget`, `skinning`, `gl` (the one pyrender import), `render` (the GL thread), `video`
(file writing) and `cli`.
"""
