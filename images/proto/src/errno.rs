//! Symbolic errno names. The guest reports errnos by name so that expectations read
//! `expect = "EINVAL"` and reports are readable without a table; this is that table.
//! Values are the generic Linux ones, which s390x uses.

const ERRNOS: &[(i32, &str)] = &[
    (1, "EPERM"),
    (2, "ENOENT"),
    (3, "ESRCH"),
    (4, "EINTR"),
    (5, "EIO"),
    (6, "ENXIO"),
    (7, "E2BIG"),
    (8, "ENOEXEC"),
    (9, "EBADF"),
    (10, "ECHILD"),
    (11, "EAGAIN"),
    (12, "ENOMEM"),
    (13, "EACCES"),
    (14, "EFAULT"),
    (15, "ENOTBLK"),
    (16, "EBUSY"),
    (17, "EEXIST"),
    (18, "EXDEV"),
    (19, "ENODEV"),
    (20, "ENOTDIR"),
    (21, "EISDIR"),
    (22, "EINVAL"),
    (23, "ENFILE"),
    (24, "EMFILE"),
    (25, "ENOTTY"),
    (26, "ETXTBSY"),
    (27, "EFBIG"),
    (28, "ENOSPC"),
    (29, "ESPIPE"),
    (30, "EROFS"),
    (31, "EMLINK"),
    (32, "EPIPE"),
    (33, "EDOM"),
    (34, "ERANGE"),
    (35, "EDEADLK"),
    (36, "ENAMETOOLONG"),
    (38, "ENOSYS"),
    (39, "ENOTEMPTY"),
    (61, "ENODATA"),
    (62, "ETIME"),
    (75, "EOVERFLOW"),
    (87, "EUSERS"),
    (95, "EOPNOTSUPP"),
    (110, "ETIMEDOUT"),
    (114, "EALREADY"),
    (115, "EINPROGRESS"),
    (125, "ECANCELED"),
    (512, "ERESTARTSYS"),
    (524, "ENOTSUPP"),
];

/// `22` -> `"EINVAL"`; an errno outside the table becomes `"E<n>"`.
pub fn errno_name(code: i32) -> String {
    ERRNOS
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, n)| (*n).to_string())
        .unwrap_or_else(|| format!("E{code}"))
}

/// `"EINVAL"` -> `Some(22)`. Used to validate expectations in scenario files.
pub fn errno_code(name: &str) -> Option<i32> {
    ERRNOS.iter().find(|(_, n)| *n == name).map(|(c, _)| *c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (c, n) in ERRNOS {
            assert_eq!(errno_name(*c), *n);
            assert_eq!(errno_code(n), Some(*c));
        }
        assert_eq!(errno_name(4095), "E4095");
        assert_eq!(errno_code("EWHATEVER"), None);
    }
}
