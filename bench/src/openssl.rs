//! The machine's raw single-core ES256 rates, from `openssl speed ecdsap256`: the limits
//! every throughput is compared with.

use std::process::Stdio;

use serde::Serialize;
use tokio::process::Command;

/// ECDSA P-256 signatures and verifications per second on one core.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RawLimits {
    /// Signatures per second.
    pub sign_per_s: f64,
    /// Verifications per second.
    pub verify_per_s: f64,
}

impl RawLimits {
    /// One verification and one signature in a row (a CSR check, then the certificate's
    /// signature): `1 / (1/sign + 1/verify)` per second.
    pub fn sign_and_verify_per_s(&self) -> f64 {
        1.0 / (1.0 / self.sign_per_s + 1.0 / self.verify_per_s)
    }
}

/// What `openssl speed` measured, and how.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measured {
    /// The rates.
    #[serde(flatten)]
    pub limits: RawLimits,
    /// `openssl speed`'s own version line, e.g. "3.0.19".
    pub openssl_version: Option<String>,
    /// The `taskset` CPU list it ran on, if pinned.
    pub cpus: Option<String>,
    /// Seconds per operation it ran for.
    pub seconds: u32,
}

/// Runs `openssl speed -seconds <seconds> ecdsap256`, under `taskset -c <cpus>` when given
/// (the broker's core, so the limit is that core's).
///
/// # Errors
/// A message when openssl (or taskset) cannot be run, fails, or prints nothing we can read.
pub(crate) async fn measure(seconds: u32, cpus: Option<&str>) -> Result<Measured, String> {
    let seconds_text = seconds.to_string();
    let openssl_args = ["speed", "-seconds", seconds_text.as_str(), "ecdsap256"];
    let mut command = match cpus {
        Some(cpus) => {
            let mut command = Command::new("taskset");
            command.args(["-c", cpus, "openssl"]);
            command
        }
        None => Command::new("openssl"),
    };
    let output = command
        .args(openssl_args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| {
            format!(
                "cannot run {}: {e}",
                if cpus.is_some() { "taskset" } else { "openssl" }
            )
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!(
            "openssl speed failed ({}): {}",
            output.status,
            stderr.lines().last().unwrap_or_default()
        ));
    }
    let limits = parse_speed(&stdout, &stderr).ok_or_else(|| {
        "cannot find the ecdsa (nistp256) sign/s and verify/s in openssl speed's output".to_string()
    })?;
    Ok(Measured {
        limits,
        openssl_version: version(&stdout),
        cpus: cpus.map(str::to_owned),
        seconds,
    })
}

/// The rates in `openssl speed ecdsap256` output: the summary row
/// ` 256 bits ecdsa (nistp256)   0.0000s   0.0000s  71513.6  24749.4` (sign/s and verify/s
/// are its last two columns) on standard output; failing that, the progress lines
/// `Doing 256 bits sign ecdsa's for 3s: 172000 256 bits ECDSA signs in 2.99s` (and `verify`)
/// on standard error, as count over CPU seconds.
pub fn parse_speed(stdout: &str, stderr: &str) -> Option<RawLimits> {
    parse_summary(stdout).or_else(|| parse_progress(stderr))
}

fn parse_summary(stdout: &str) -> Option<RawLimits> {
    let line = stdout.lines().find(|l| l.contains("ecdsa (nistp256)"))?;
    let mut numbers = line.split_whitespace().rev();
    let verify = positive(numbers.next()?.parse().ok()?)?;
    let sign = positive(numbers.next()?.parse().ok()?)?;
    Some(RawLimits {
        sign_per_s: sign,
        verify_per_s: verify,
    })
}

fn parse_progress(stderr: &str) -> Option<RawLimits> {
    let rate = |operation: &str| {
        let line = stderr
            .lines()
            .find(|l| l.starts_with("Doing 256 bits") && l.contains(&format!(" {operation} ")))?;
        // "...: <count> 256 bits ECDSA <ops> in <seconds>s"
        let (_, result) = line.split_once(": ")?;
        let count: f64 = result.split_whitespace().next()?.parse().ok()?;
        let seconds: f64 = result
            .rsplit_once(" in ")?
            .1
            .trim()
            .strip_suffix('s')?
            .parse()
            .ok()?;
        positive(count / positive(seconds)?)
    };
    Some(RawLimits {
        sign_per_s: rate("sign")?,
        verify_per_s: rate("verify")?,
    })
}

/// The `version: 3.0.19` line `openssl speed` starts with.
fn version(stdout: &str) -> Option<String> {
    stdout.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case("version")
            .then(|| value.trim().to_owned())
    })
}

fn positive(value: f64) -> Option<f64> {
    (value.is_finite() && value > 0.0).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// OpenSSL 3.0.19 on this project's machine, `-seconds 1`.
    const STDOUT: &str = "\
version: 3.0.19
built on: Fri Apr  3 12:29:32 2026 UTC
options: bn(64,64)
compiler: gcc -fPIC -pthread -m64
CPUINFO: OPENSSL_ia32cap=0xfffa3203078bffff:0x405fc6f1bf07ab
                              sign    verify    sign/s verify/s
 256 bits ecdsa (nistp256)   0.0000s   0.0000s  71513.6  24749.4
";
    const STDERR: &str = "\
Doing 256 bits sign ecdsa's for 1s: 57926 256 bits ECDSA signs in 0.81s
Doing 256 bits verify ecdsa's for 1s: 21532 256 bits ECDSA verify in 0.87s
";

    #[test]
    fn summary_row_gives_sign_and_verify() {
        let limits = parse_speed(STDOUT, "").unwrap();
        assert_eq!(limits.sign_per_s, 71513.6);
        assert_eq!(limits.verify_per_s, 24749.4);
        let both = limits.sign_and_verify_per_s();
        assert!((both - 18386.6).abs() < 1.0, "{both}");
        assert_eq!(version(STDOUT).as_deref(), Some("3.0.19"));
        assert_eq!(version("no version here"), None);
    }

    #[test]
    fn progress_lines_are_the_fallback() {
        let limits = parse_speed("no table here\n", STDERR).unwrap();
        assert!((limits.sign_per_s - 57926.0 / 0.81).abs() < 0.01);
        assert!((limits.verify_per_s - 21532.0 / 0.87).abs() < 0.01);
        // The summary wins when both are there.
        assert_eq!(parse_speed(STDOUT, STDERR).unwrap().sign_per_s, 71513.6);
    }

    #[test]
    fn unreadable_output_gives_nothing() {
        assert_eq!(parse_speed("", ""), None);
        assert_eq!(
            parse_speed("garbage\nmore garbage\n", "Doing nothing\n"),
            None
        );
        // Another algorithm's row is not ours.
        let rsa = "                  sign    verify    sign/s verify/s\n\
                   rsa 2048 bits 0.000500s 0.000015s   2000.0  66666.7\n";
        assert_eq!(parse_speed(rsa, ""), None);
        // A row with zero, negative or non-numeric rates is refused.
        for row in [
            " 256 bits ecdsa (nistp256)   0.0000s   0.0000s  0.0  24749.4",
            " 256 bits ecdsa (nistp256)   0.0000s   0.0000s  71513.6  -1",
            " 256 bits ecdsa (nistp256)   0.0000s   0.0000s  71513.6  inf",
            " 256 bits ecdsa (nistp256)   0.0000s   0.0000s  fast  slow",
            " 256 bits ecdsa (nistp256)",
        ] {
            assert_eq!(parse_speed(row, ""), None, "{row}");
        }
        // Progress lines with only one of the two operations, or zero seconds.
        let sign_only = "Doing 256 bits sign ecdsa's for 1s: 57926 256 bits ECDSA signs in 0.81s\n";
        assert_eq!(parse_speed("", sign_only), None);
        let zero = STDERR.replace("0.81s", "0.00s");
        assert_eq!(parse_speed("", &zero), None);
    }
}
