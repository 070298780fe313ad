//! Symlinks in the jobs directory and the files they resolve to.
//!
//! A link's content is its target's, but editing the target produces events
//! for the target's name, not the link's. This index turns an event on a
//! target into a touch of every link to it, and says which directories hold
//! targets (those below the jobs directory need a watch of their own).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Links {
    /// Link (as reported) → target (resolved).
    targets: BTreeMap<PathBuf, PathBuf>,
    /// Target → the links to it.
    links: BTreeMap<PathBuf, BTreeSet<PathBuf>>,
}

impl Links {
    pub fn new() -> Links {
        Links::default()
    }

    /// Records where `link` leads now: `None` when it is not a link, or one
    /// whose target is not used (outside the jobs directory, dangling).
    pub fn set(&mut self, link: &Path, target: Option<PathBuf>) {
        if let Some(old) = self.targets.remove(link) {
            if let Some(links) = self.links.get_mut(&old) {
                links.remove(link);
                if links.is_empty() {
                    self.links.remove(&old);
                }
            }
        }
        if let Some(target) = target {
            self.links.entry(target.clone()).or_default().insert(link.to_path_buf());
            self.targets.insert(link.to_path_buf(), target);
        }
    }

    /// The links that resolve to `target`.
    pub fn links_to(&self, target: &Path) -> impl Iterator<Item = &PathBuf> {
        self.links.get(target).into_iter().flatten()
    }

    /// The links whose target is anywhere below `dir`.
    pub fn links_below<'a>(&'a self, dir: &'a Path) -> impl Iterator<Item = &'a PathBuf> + 'a {
        self.targets.iter().filter(move |(_, target)| target.starts_with(dir)).map(|(link, _)| link)
    }

    /// The directories that hold targets, other than `watched` (the jobs
    /// directory, whose own watch already covers its entries).
    pub fn target_dirs(&self, watched: &Path) -> BTreeSet<PathBuf> {
        self.links
            .keys()
            .filter_map(|target| target.parent())
            .filter(|dir| *dir != watched)
            .map(Path::to_path_buf)
            .collect()
    }

    pub fn clear(&mut self) {
        self.targets.clear();
        self.links.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pb(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn targets_lead_back_to_their_links() {
        let mut links = Links::new();
        links.set(Path::new("/jobs/a.yaml"), Some(pb("/real/jobs/lib/x.yaml")));
        links.set(Path::new("/jobs/b.yaml"), Some(pb("/real/jobs/lib/x.yaml")));
        links.set(Path::new("/jobs/c.yaml"), Some(pb("/real/jobs/c2.yaml")));
        let to_x: Vec<_> = links.links_to(Path::new("/real/jobs/lib/x.yaml")).collect();
        assert_eq!(to_x, [&pb("/jobs/a.yaml"), &pb("/jobs/b.yaml")]);
        assert_eq!(links.links_to(Path::new("/real/jobs/other.yaml")).count(), 0);
        assert_eq!(
            links.target_dirs(Path::new("/real/jobs")),
            BTreeSet::from([pb("/real/jobs/lib")])
        );
        let below: Vec<_> = links.links_below(Path::new("/real/jobs/lib")).collect();
        assert_eq!(below, [&pb("/jobs/a.yaml"), &pb("/jobs/b.yaml")]);
    }

    #[test]
    fn relinking_or_unlinking_forgets_the_old_target() {
        let mut links = Links::new();
        links.set(Path::new("/jobs/a.yaml"), Some(pb("/real/jobs/lib/x.yaml")));
        links.set(Path::new("/jobs/a.yaml"), Some(pb("/real/jobs/lib2/y.yaml")));
        assert_eq!(links.links_to(Path::new("/real/jobs/lib/x.yaml")).count(), 0);
        assert_eq!(
            links.target_dirs(Path::new("/real/jobs")),
            BTreeSet::from([pb("/real/jobs/lib2")])
        );
        links.set(Path::new("/jobs/a.yaml"), None);
        assert_eq!(links, Links::new());
    }
}
