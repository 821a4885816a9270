//! Changing which names point where, and deleting: `docker tag`, `docker rmi` with Docker's
//! untag-then-delete rules and conflict messages, and `docker image prune`. Layers go when no
//! image needs them; an image a container uses is never deleted.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::atomic;
use super::config::{ImageUser, PruneReport, Removed};
use super::digest::ImageId;
use super::error::{Error, Result};
use super::reference::Reference;
use super::store::{ImageStore, State};

fn short(container: &str) -> &str {
    if container.len() == 64 && container.bytes().all(|b| b.is_ascii_hexdigit()) {
        &container[..12]
    } else {
        container
    }
}

/// Docker's isSingleReference: at most one tag, and digest references only of its name.
fn single_reference(refs: &[Reference]) -> bool {
    if refs.len() <= 1 {
        return refs.len() == 1;
    }
    let tags: Vec<&Reference> = refs.iter().filter(|r| !r.is_digest()).collect();
    if tags.len() > 1 {
        return false;
    }
    let single = tags.first().copied().unwrap_or(&refs[0]);
    let names: BTreeSet<&str> = refs
        .iter()
        .filter(|r| r.is_digest())
        .map(Reference::name)
        .collect();
    names.len() == 1 && names.contains(single.name())
}

impl ImageStore {
    /// `docker tag SRC REPO[:TAG]`: points `repo:tag` (tag empty: `latest`) at the image `src`
    /// names. Returns the new reference.
    pub fn tag(&self, src: &str, repo: &str, tag: &str) -> Result<Reference> {
        let r = Reference::with_tag(repo, tag)?;
        if r.is_digest() {
            return Err(Error::invalid(
                "refusing to create a tag with a digest reference",
            ));
        }
        self.tag_ref(src, &r)?;
        Ok(r)
    }

    /// Points the reference `r` at the image `src` names.
    pub fn tag_ref(&self, src: &str, r: &Reference) -> Result<ImageId> {
        let mut st = self.lock();
        let id = Self::resolve_in(&st, src)?.id.clone();
        let old = st.tags.insert(r.canonical(), id.clone());
        if let Err(e) = self.save_tags(&st) {
            match old {
                Some(o) => st.tags.insert(r.canonical(), o),
                None => st.tags.remove(&r.canonical()),
            };
            return Err(e);
        }
        self.touch_tag_time(&mut st, &id)?;
        Ok(id)
    }

    /// `docker rmi`: untags or deletes, with Docker's rules and messages. `in_use` tells which
    /// container (if any) uses an image. Deviation from Docker: an image a container uses is
    /// never deleted (with force, its tags are removed and it stays, dangling), since the
    /// container's rootfs is built on its layers. `noprune` has nothing to keep: loaded and
    /// imported images have no parent images.
    pub fn remove(
        &self,
        name: &str,
        force: bool,
        noprune: bool,
        in_use: &dyn Fn(&ImageId) -> Option<ImageUser>,
    ) -> Result<Vec<Removed>> {
        let _ = noprune;
        let mut st = self.lock();
        let img = Self::resolve_in(&st, name)?;
        let id = img.id.clone();
        let user = in_use(&id);
        let refs = Self::refs_of(&st, &id);
        let by_id = id.as_str().starts_with(name) || id.hex().starts_with(name);
        let mut out = Vec::new();
        let conflict = |hard: bool, what: String| {
            let how = if hard {
                "cannot be forced"
            } else {
                "must be forced"
            };
            Error::Conflict(format!(
                "conflict: unable to delete {} ({how}) - {what}",
                id.short()
            ))
        };
        let container_conflict = |u: &ImageUser| {
            if u.running {
                conflict(
                    true,
                    format!(
                        "image is being used by running container {}",
                        short(&u.container)
                    ),
                )
            } else {
                conflict(
                    false,
                    format!(
                        "image is being used by stopped container {}",
                        short(&u.container)
                    ),
                )
            }
        };
        if !by_id {
            let r = Reference::parse(name)?;
            if !force && single_reference(&refs) {
                if let Some(u) = &user {
                    return Err(Error::Conflict(format!(
                        "conflict: unable to remove repository reference \"{name}\" (must force) - container {} is using its referenced image {}",
                        short(&u.container),
                        id.short()
                    )));
                }
            }
            st.tags.remove(&r.canonical());
            out.push(Removed::Untagged(r.to_string()));
            if !r.is_digest()
                && !refs
                    .iter()
                    .any(|o| !o.is_digest() && o.name() == r.name() && *o != r)
            {
                // The last tag of a repository takes that repository's digests with it.
                for d in refs
                    .iter()
                    .filter(|o| o.is_digest() && o.name() == r.name())
                {
                    st.tags.remove(&d.canonical());
                    out.push(Removed::Untagged(d.to_string()));
                }
            }
            if !Self::refs_of(&st, &id).is_empty() || user.is_some() {
                self.save_tags(&st)?;
                return Ok(out);
            }
        } else {
            if let Some(u) = user.as_ref().filter(|u| u.running || !force) {
                return Err(container_conflict(u));
            }
            if !single_reference(&refs) && !refs.is_empty() && !force {
                return Err(conflict(
                    false,
                    "image is referenced in multiple repositories".into(),
                ));
            }
            for r in &refs {
                st.tags.remove(&r.canonical());
                out.push(Removed::Untagged(r.to_string()));
            }
            if user.is_some() {
                self.save_tags(&st)?;
                return Ok(out);
            }
        }
        self.save_tags(&st)?;
        let (deleted, trash, _) = self.delete_image(&mut st, &id)?;
        out.extend(deleted);
        drop(st);
        for t in trash {
            let _ = std::fs::remove_dir_all(t);
        }
        Ok(out)
    }

    /// Deletes an untagged image and the layers no other image needs. Returns the records,
    /// the trash directories to delete after unlocking, and the bytes of layers removed.
    fn delete_image(
        &self,
        st: &mut State,
        id: &ImageId,
    ) -> Result<(Vec<Removed>, Vec<PathBuf>, u64)> {
        let Some(img) = st.images.get(id).cloned() else {
            return Ok((vec![], vec![], 0));
        };
        atomic::remove(&self.record_path(id))?;
        st.images.remove(id);
        let _ = std::fs::remove_file(self.blob_path(id.hex()));
        let mut out = vec![Removed::Deleted(id.to_string())];
        let used: BTreeSet<&String> = st.images.values().flat_map(|i| i.chain.iter()).collect();
        let mut trash = Vec::new();
        let mut space = 0;
        for (c, s) in img.chain.iter().zip(&img.layer_sizes).rev() {
            if used.contains(c) {
                continue;
            }
            match self.move_to_trash(c) {
                Ok(t) => {
                    trash.push(t);
                    space += s;
                    out.push(Removed::Deleted(c.clone()));
                }
                // The image is gone already; the next open collects what is left.
                Err(e) => crate::log::warn(format_args!("image store: {e}")),
            }
        }
        Ok((out, trash, space))
    }

    /// `POST /images/prune`: images no container uses; with `dangling_only`, only those
    /// without tags. `SpaceReclaimed` counts the layers removed.
    pub fn prune(
        &self,
        dangling_only: bool,
        in_use: &dyn Fn(&ImageId) -> Option<ImageUser>,
    ) -> Result<PruneReport> {
        let mut st = self.lock();
        let mut report = PruneReport::default();
        let mut all_trash = Vec::new();
        let ids: Vec<ImageId> = st.images.keys().cloned().collect();
        for id in ids {
            let refs = Self::refs_of(&st, &id);
            if (dangling_only && !refs.is_empty()) || in_use(&id).is_some() {
                continue;
            }
            for r in &refs {
                st.tags.remove(&r.canonical());
                report.images_deleted.push(Removed::Untagged(r.to_string()));
            }
            if !refs.is_empty() {
                self.save_tags(&st)?;
            }
            let (deleted, trash, space) = self.delete_image(&mut st, &id)?;
            report.images_deleted.extend(deleted);
            report.space_reclaimed += space;
            all_trash.extend(trash);
        }
        drop(st);
        for t in all_trash {
            let _ = std::fs::remove_dir_all(t);
        }
        Ok(report)
    }
}
