// Entry point of shaders/matmul.wgsl with a thread per RPT rows (after
// matmul_x_loads.wgsl).

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let thread = (wg.y * groups.x + wg.x) * WG + lid;
    if (thread >= matmul_threads()) {
        return;
    }
    matmul(thread, 0u);
}
