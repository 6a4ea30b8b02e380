//! The one acting user. The state database belongs to the user the service runs as (the
//! package's `ops-run`). Run as root, ops-run reads what only root may read (the env file) and
//! then becomes that user — uid, gid and supplementary groups — before it touches the state,
//! a backup folder or a server, so every file it writes is the service's. Run as a third
//! user, a command that writes is refused with one line naming the owner.

use std::ffi::CStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A user of the system, as `/etc/passwd` (or NSS) knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub name: String,
    pub home: PathBuf,
}

/// Who owns the state: the database's owner, or (before it exists) its folder's.
pub fn state_owner(state: &Path) -> Option<u32> {
    if let Ok(m) = std::fs::metadata(state) {
        return Some(m.uid());
    }
    let dir = state.parent().filter(|d| !d.as_os_str().is_empty())?;
    std::fs::metadata(dir).ok().map(|m| m.uid())
}

/// The user with this name.
pub fn lookup_name(name: &str) -> Option<User> {
    let c = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwnam_r writes into `pwd` and `buf`, which outlive the call; `found` points
    // at `pwd` or is null.
    let rc = unsafe {
        libc::getpwnam_r(
            c.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() {
        return None;
    }
    lookup(pwd.pw_uid)
}

/// The user with this uid.
pub fn lookup(uid: u32) -> Option<User> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwuid_r writes into `pwd` and `buf`, which outlive the call; `found` points
    // at `pwd` or is null.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() {
        return None;
    }
    // SAFETY: on success the strings point into `buf`, NUL-terminated.
    let (name, home) = unsafe {
        (
            CStr::from_ptr(pwd.pw_name).to_string_lossy().into_owned(),
            CStr::from_ptr(pwd.pw_dir).to_string_lossy().into_owned(),
        )
    };
    Some(User {
        uid,
        gid: pwd.pw_gid,
        name,
        home: PathBuf::from(home),
    })
}

/// The supplementary groups of `user` (NSS, as `id` shows them).
fn groups(user: &User) -> Vec<libc::gid_t> {
    let Ok(name) = std::ffi::CString::new(user.name.clone()) else {
        return vec![user.gid];
    };
    let mut n: libc::c_int = 64;
    loop {
        let mut list = vec![0 as libc::gid_t; n as usize];
        let mut count = n;
        // SAFETY: `list` has room for `count` entries; getgrouplist writes at most that many
        // and says how many it needs.
        let rc =
            unsafe { libc::getgrouplist(name.as_ptr(), user.gid, list.as_mut_ptr(), &mut count) };
        if rc >= 0 {
            list.truncate(count.max(0) as usize);
            return list;
        }
        if count <= n || n > 65536 {
            return vec![user.gid];
        }
        n = count;
    }
}

/// Becomes `user` for good: groups first, then the gid, then the uid (all threads: glibc
/// applies them process-wide). Checked afterwards: a half switch is an error.
pub fn become_user(user: &User) -> Result<(), String> {
    let groups = groups(user);
    // SAFETY: plain system calls with values; glibc's wrappers apply them to every thread.
    let ok = unsafe {
        libc::setgroups(groups.len(), groups.as_ptr()) == 0
            && libc::setresgid(user.gid, user.gid, user.gid) == 0
            && libc::setresuid(user.uid, user.uid, user.uid) == 0
    };
    let now = (
        rustix::process::getuid().as_raw(),
        rustix::process::geteuid().as_raw(),
        rustix::process::getgid().as_raw(),
    );
    if !ok || now != (user.uid, user.uid, user.gid) {
        return Err(format!(
            "cannot act as {} (uid {}): {}",
            user.name,
            user.uid,
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// What the process does about the state's owner.
#[derive(Debug, PartialEq, Eq)]
pub enum Acting {
    /// The state is ours (or does not exist yet): nothing to do.
    Itself,
    /// Root, and the state belongs to this user: become it.
    Become(User),
    /// Neither root nor the state's owner.
    Foreign { owner: String },
}

/// Decides for a process with effective uid `euid`.
pub fn decide(state: &Path, euid: u32) -> Acting {
    let Some(owner) = state_owner(state) else {
        return Acting::Itself;
    };
    if owner == euid {
        return Acting::Itself;
    }
    if euid == 0 {
        return match lookup(owner) {
            Some(u) => Acting::Become(u),
            None => Acting::Foreign {
                owner: format!("uid {owner}"),
            },
        };
    }
    Acting::Foreign {
        owner: lookup(owner).map_or_else(|| format!("uid {owner}"), |u| u.name),
    }
}

/// This machine's name (the kernel's), as restic and a browser's `Host` know it.
pub fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}
