//! Facts about the machine a measurement ran on, for reports that name their CPU.

/// The CPU's name and the vector extensions that matter for Kiln's kernels, e.g.
/// `"AMD EPYC 7B13, 2 logical cores, AVX2, no AVX-512"`. On Linux from `/proc/cpuinfo`;
/// elsewhere the architecture and core count only.
pub fn cpu_description() -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    describe(&info, cores)
}

/// [`cpu_description`] from the text of a `/proc/cpuinfo` and a core count.
pub fn describe(cpuinfo: &str, cores: usize) -> String {
    let field = |key: &str| {
        cpuinfo.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    };
    let name = field("model name").unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let mut parts = vec![name, format!("{cores} logical cores")];
    if let Some(flags) = field("flags") {
        let has = |f: &str| flags.split_whitespace().any(|x| x == f);
        if has("avx2") {
            parts.push("AVX2".into());
        }
        if has("avx512f") {
            parts.push(if has("avx512_vnni") {
                "AVX-512 with VNNI".into()
            } else {
                "AVX-512".into()
            });
        } else {
            parts.push("no AVX-512".into());
        }
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_cpu_and_its_vector_extensions() {
        let amd = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx avx2 fma\n";
        assert_eq!(
            describe(amd, 2),
            "AMD EPYC 7B13, 2 logical cores, AVX2, no AVX-512"
        );
        let intel = "model name\t: Intel(R) Xeon(R) CPU\nflags\t: avx2 avx512f avx512_vnni\n";
        assert_eq!(
            describe(intel, 4),
            "Intel(R) Xeon(R) CPU, 4 logical cores, AVX2, AVX-512 with VNNI"
        );
        assert_eq!(
            describe("", 8),
            format!("{}, 8 logical cores", std::env::consts::ARCH)
        );
    }
}
