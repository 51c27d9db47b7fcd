//! Shared networks: one network namespace for a group of containers (the tasks of a run), held by a tiny container
//! made ahead of them, so that starting each task costs no network setup.
//!
//! Setting up a container's network is most of what `docker start` costs on Docker 20.10 (the engine re-executes
//! itself to make the namespace, then wires a veth pair into the bridge), and tearing it down is most of what the
//! engine does between a container's exit and its wait returning. A container that joins another's namespace
//! (`NetworkMode: container:<id>`) skips both. The holder runs a ~130-byte static program that only sleeps, in an
//! image Gofer imports itself (no registry needed); it dies with SIGKILL, as `StopSignal` says, so stopping it never
//! waits out a grace period.
//!
//! Removing a holder takes the network from every container still in it, so a holder goes only when its group is
//! released (the run ended) or when its run is found complete at a server's start.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig};
use bollard::query_parameters::{CreateContainerOptions, CreateImageOptions};
use bytes::Bytes;
use futures::StreamExt;
use gofer_scheduler::{Error, Result, Scheduler, labels};

use tokio::sync::OnceCell;

use crate::{DockerScheduler, engine_error};

/// The image of the holders, imported from [`holder_program`]; the tag changes when the program does.
pub(crate) const HOLDER_IMAGE: &str = "gofer-network-holder:1";

/// The holders of this process's groups, by key: made once each, `None` when one could not be made (its group's
/// containers then get networks of their own).
#[derive(Default)]
pub(crate) struct Holders {
    by_key: Mutex<HashMap<String, Arc<OnceCell<Option<String>>>>>,
    image: OnceCell<bool>,
}

impl DockerScheduler {
    /// The holder of `key`'s network, made (or found, when a previous process made it) on first use; `None` when
    /// sharing is off or no holder could be made.
    pub(crate) async fn holder(&self, key: &str, labels: &BTreeMap<String, String>) -> Option<String> {
        if !self.share_networks {
            return None;
        }
        for _ in 0..2 {
            let cell = {
                let mut by_key = self.holders.by_key.lock().unwrap_or_else(|p| p.into_inner());
                by_key.entry(key.to_string()).or_default().clone()
            };
            let id = cell
                .get_or_init(|| async {
                    match self.make_holder(key, labels).await {
                        Ok(id) => Some(id),
                        Err(e) => {
                            tracing::warn!(group = %key, error = %chain(&e), "could not make a shared network; its containers get their own");
                            None
                        }
                    }
                })
                .await
                .clone()?;
            // A holder someone removed or stopped cannot be joined: one more is made in its place.
            match self.inspect(&id).await {
                Ok(info) if info.is_running() => return Some(id),
                _ => {
                    let mut by_key = self.holders.by_key.lock().unwrap_or_else(|p| p.into_inner());
                    if by_key.get(key).is_some_and(|current| Arc::ptr_eq(current, &cell)) {
                        by_key.remove(key);
                    }
                }
            }
        }
        None
    }

    /// Finds the running holder a previous process made for `key`, or makes and starts one.
    async fn make_holder(&self, key: &str, labels: &BTreeMap<String, String>) -> Result<String> {
        let wanted = BTreeMap::from([(labels::SHARED_NETWORK.to_string(), key.to_string())]);
        if let Some(found) = self.find(&wanted).await?.into_iter().find(|c| c.is_running()) {
            return Ok(found.id);
        }
        self.holder_image().await?;
        let mut labels: HashMap<String, String> = labels.clone().into_iter().collect();
        labels.remove(labels::TASK);
        labels.remove(labels::ATTEMPT);
        labels.insert(labels::SHARED_NETWORK.to_string(), key.to_string());
        let body = ContainerCreateBody {
            image: Some(HOLDER_IMAGE.to_string()),
            entrypoint: Some(vec!["/hold".to_string()]),
            labels: Some(labels),
            stop_signal: Some("SIGKILL".to_string()),
            host_config: Some(HostConfig {
                log_config: Some(HostConfigLogConfig { typ: Some("none".into()), config: None }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(None::<CreateContainerOptions>, body)
            .await
            .map_err(engine_error("create a shared network's holder"))?;
        if let Err(e) = self.docker.start_container(&created.id, None).await {
            let _ = self.remove(&created.id).await;
            return Err(engine_error("start a shared network's holder")(e));
        }
        Ok(created.id)
    }

    /// Imports the holders' image once per process, unless the engine has it.
    async fn holder_image(&self) -> Result<()> {
        let ready = self
            .holders
            .image
            .get_or_try_init(|| async {
                if self.docker.inspect_image(HOLDER_IMAGE).await.is_ok() {
                    return Ok(true);
                }
                let Some(program) = holder_program() else {
                    let arch = std::env::consts::ARCH;
                    return Err(Error::Unsupported { reason: format!("no network holder program for {arch}") });
                };
                let (repo, tag) = HOLDER_IMAGE.split_once(':').unwrap_or((HOLDER_IMAGE, "latest"));
                let options = CreateImageOptions {
                    from_src: Some("-".into()),
                    repo: Some(repo.into()),
                    tag: Some(tag.into()),
                    ..Default::default()
                };
                let archive = Bytes::from(tar_of_one_file("hold", &program));
                let mut import = self.docker.create_image(Some(options), Some(bollard::body_full(archive)), None);
                while let Some(progress) = import.next().await {
                    progress.map_err(engine_error("import the shared networks' holder image"))?;
                }
                Ok(true)
            })
            .await?;
        debug_assert!(*ready);
        Ok(())
    }

    /// Removes `key`'s holder, and any a previous process made for it.
    pub(crate) async fn release_holder(&self, key: &str) {
        self.holders.by_key.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
        let wanted = BTreeMap::from([(labels::SHARED_NETWORK.to_string(), key.to_string())]);
        let found = match self.find(&wanted).await {
            Ok(found) => found,
            Err(e) => {
                return tracing::warn!(group = %key, error = %chain(&e), "could not look for a shared network's holder; it goes at the next start");
            }
        };
        for holder in found {
            if let Err(e) = self.remove(&holder.id).await {
                tracing::warn!(group = %key, error = %chain(&e), "could not remove a shared network's holder; it goes at the next start");
            }
        }
    }
}

fn chain(e: &Error) -> String {
    let mut words = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        words.push_str(": ");
        words.push_str(&cause.to_string());
        source = cause.source();
    }
    words
}

/// A static Linux program that sleeps until killed: `pause()` in a loop, as an ELF executable of one loadable
/// segment. Only for x86-64 (the only machine it was tried on); elsewhere there is none and networks are not shared.
fn holder_program() -> Option<Vec<u8>> {
    if std::env::consts::ARCH != "x86_64" {
        return None;
    }
    const BASE: u64 = 0x40_0000;
    const HEADERS: u64 = 64 + 56;
    // mov eax, 34 (pause); syscall; jmp back to the mov.
    let code: [u8; 9] = [0xb8, 0x22, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xeb, 0xf7];
    let size = HEADERS + code.len() as u64;
    let mut elf = Vec::with_capacity(size as usize);
    elf.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    elf.extend_from_slice(&2u16.to_le_bytes()); // executable
    elf.extend_from_slice(&0x3eu16.to_le_bytes()); // x86-64
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&(BASE + HEADERS).to_le_bytes()); // entry point: the code after the headers
    elf.extend_from_slice(&64u64.to_le_bytes()); // program headers right after this one
    elf.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    elf.extend_from_slice(&0u32.to_le_bytes());
    elf.extend_from_slice(&64u16.to_le_bytes());
    elf.extend_from_slice(&56u16.to_le_bytes());
    elf.extend_from_slice(&1u16.to_le_bytes());
    elf.extend_from_slice(&[0; 6]);
    // One loadable, readable and executable segment: the whole file.
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&5u32.to_le_bytes());
    elf.extend_from_slice(&0u64.to_le_bytes());
    elf.extend_from_slice(&BASE.to_le_bytes());
    elf.extend_from_slice(&BASE.to_le_bytes());
    elf.extend_from_slice(&size.to_le_bytes());
    elf.extend_from_slice(&size.to_le_bytes());
    elf.extend_from_slice(&0x1000u64.to_le_bytes());
    elf.extend_from_slice(&code);
    Some(elf)
}

/// A tar archive (ustar) of one executable file at the root.
fn tar_of_one_file(name: &str, content: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    let mut put = |at: usize, text: &[u8]| header[at..at + text.len()].copy_from_slice(text);
    put(0, name.as_bytes());
    put(100, b"0000755\0");
    put(108, b"0000000\0");
    put(116, b"0000000\0");
    put(124, format!("{:011o}\0", content.len()).as_bytes());
    put(136, b"00000000000\0");
    put(148, b"        ");
    put(156, b"0");
    put(257, b"ustar\0");
    put(263, b"00");
    let checksum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{checksum:06o}\0 ").as_bytes());
    let mut archive = header.to_vec();
    archive.extend_from_slice(content);
    archive.resize(archive.len().div_ceil(512) * 512 + 1024, 0);
    archive
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_archive_is_one_file_with_a_valid_header() {
        let archive = tar_of_one_file("hold", b"abc");
        assert_eq!(archive.len(), 512 * 4, "header, one data block, two end blocks");
        assert_eq!(&archive[0..4], b"hold");
        assert_eq!(&archive[124..136], b"00000000003\0");
        let stored = std::str::from_utf8(&archive[148..154]).map(|s| u32::from_str_radix(s, 8));
        let mut blank = archive[..512].to_vec();
        blank[148..156].copy_from_slice(b"        ");
        let sum: u32 = blank.iter().map(|&b| u32::from(b)).sum();
        assert_eq!(stored, Ok(Ok(sum)));
        assert_eq!(&archive[512..515], b"abc");
    }
}
