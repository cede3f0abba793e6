#version 330 core
// SignStream's lean replacement for pyrender's mesh.vert: the avatar's model matrix is rigid, so
// normals use mat3(M) instead of a per-vertex inverse-transpose (costly on a software rasteriser).
layout(location = 0) in vec3 position;
#ifdef NORMAL_LOC
layout(location = NORMAL_LOC) in vec3 normal;
#endif
#ifdef COLOR_0_LOC
layout(location = COLOR_0_LOC) in vec4 color_0;
#endif

uniform mat4 M;
uniform mat4 V;
uniform mat4 P;

out vec3 frag_normal;
out vec4 frag_color_in;

void main()
{
    gl_Position = P * V * M * vec4(position, 1.0);
#ifdef NORMAL_LOC
    frag_normal = mat3(M) * normal;
#else
    frag_normal = vec3(0.0, 0.0, 1.0);
#endif
#ifdef COLOR_0_LOC
    frag_color_in = color_0;
#else
    frag_color_in = vec4(1.0);
#endif
}
