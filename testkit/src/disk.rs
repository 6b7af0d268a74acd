//! A small disk for one master: a tmpfs of a few megabytes holding a copy of its data
//! dir, bound over that dir in a private mount namespace (a user namespace too, so no
//! privilege is needed), so the master can be made to run out of space without touching
//! the host's file systems.
//!
//! A master sees the disk when started under [`SmallDisk::wrapper`] (`nsenter` into
//! the namespace, see [`crate::Cluster::wrap`]); the namespace lives as long as the
//! [`SmallDisk`] value.

use std::io::{self, BufRead};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The namespace holding the disk, kept alive by one idle process.
#[derive(Debug)]
pub struct SmallDisk {
    holder: Child,
    dir: PathBuf,
}

impl SmallDisk {
    /// A disk of `size` bytes over `dir`, holding what `dir` holds now.
    pub fn new(dir: &Path, size: u64) -> io::Result<SmallDisk> {
        let script = r#"set -e
            mkdir -p "$1.tmpfs"
            mount -t tmpfs -o size="$2" tmpfs "$1.tmpfs"
            cp -a "$1/." "$1.tmpfs/"
            mount --bind "$1.tmpfs" "$1"
            echo ready
            exec sleep 3600"#;
        let mut holder = Command::new("unshare")
            .args([
                "--user",
                "--map-root-user",
                "--mount",
                "--propagation",
                "private",
            ])
            .args(["sh", "-c", script, "sh"])
            .arg(dir)
            .arg(size.to_string())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        let stdout = holder.stdout.take().expect("piped");
        io::BufReader::new(stdout).read_line(&mut line)?;
        let disk = SmallDisk {
            holder,
            dir: dir.to_owned(),
        };
        if line.trim() != "ready" {
            return Err(io::Error::other(format!(
                "no tmpfs could be mounted over {}",
                dir.display()
            )));
        }
        Ok(disk)
    }

    /// The command prefix that runs a program in the disk's namespace.
    pub fn wrapper(&self) -> Vec<String> {
        let pid = self.holder.id().to_string();
        [
            "nsenter",
            "--target",
            &pid,
            "--user",
            "--mount",
            "--preserve-credentials",
        ]
        .map(String::from)
        .to_vec()
    }

    /// Runs `args` in the disk's namespace.
    fn run(&self, args: &[&str]) -> io::Result<()> {
        let wrapper = self.wrapper();
        let status = Command::new(&wrapper[0])
            .args(&wrapper[1..])
            .args(args)
            .status()?;
        if !status.success() {
            return Err(io::Error::other(format!("{args:?}: {status}")));
        }
        Ok(())
    }

    /// Resizes the disk (space freed, as an operator would).
    pub fn resize(&self, size: u64) -> io::Result<()> {
        let tmpfs = self.tmpfs();
        self.run(&["mount", "-o", &format!("remount,size={size}"), &tmpfs])
    }

    /// Copies what the disk holds back to the real dir beneath it, and removes the
    /// disk. No process may be using it.
    pub fn restore(self) -> io::Result<()> {
        let (dir, tmpfs) = (self.dir.display().to_string(), self.tmpfs());
        let script = r#"set -e; umount "$1"; rm -rf "$1"; mkdir "$1"; cp -a "$2/." "$1/""#;
        self.run(&["sh", "-c", script, "sh", &dir, &tmpfs])
    }

    fn tmpfs(&self) -> String {
        format!("{}.tmpfs", self.dir.display())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}
