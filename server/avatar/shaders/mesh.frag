#version 330 core
// SignStream's lean replacement for pyrender's PBR mesh.frag: matte Lambert shading from
// pyrender's directional lights plus ambient, in linear light, then gamma. Uniform names are
// pyrender's, so its renderer binds them unchanged.
struct DirectionalLight {
    vec3 direction;
    vec3 color;
    float intensity;
};
struct Material {
    vec4 base_color_factor;
};

uniform DirectionalLight directional_lights[MAX_DIRECTIONAL_LIGHTS];
uniform int n_directional_lights;
uniform vec3 ambient_light;
uniform Material material;
uniform vec3 cam_pos;

in vec3 frag_normal;
in vec4 frag_color_in;
out vec4 frag_color;

void main()
{
    vec3 n = normalize(frag_normal);
    // Double-sided surfaces: light the side that faces the camera.
    if (!gl_FrontFacing) n = -n;
    vec4 base = material.base_color_factor * frag_color_in;
    vec3 light = ambient_light;
    for (int i = 0; i < n_directional_lights; i++) {
        float d = max(dot(n, -directional_lights[i].direction), 0.0);
        light += d * directional_lights[i].intensity * directional_lights[i].color / 3.14159265;
    }
    vec3 color = base.rgb * light;
    frag_color = clamp(vec4(pow(color, vec3(1.0 / 2.2)), base.a), 0.0, 1.0);
}
