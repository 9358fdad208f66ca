//! Errors Xen returns: a negated errno (`xen/include/public/errno.h`, xen.md §1), and the
//! separate `GNTST_*` status of grant operations (xen.md §7).

use core::fmt;

/// A failed hypercall: the negative value Xen returned in `x0` (e.g. `-38` for ENOSYS).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct XenError(pub i64);

impl XenError {
    /// Operation not permitted (XSM denied, not the server's emulator).
    pub const EPERM: XenError = XenError(-1);
    /// No such ioreq server / frame.
    pub const ENOENT: XenError = XenError(-2);
    /// No such domain.
    pub const ESRCH: XenError = XenError(-3);
    /// I/O error (acquire_resource partially mapped).
    pub const EIO: XenError = XenError(-5);
    /// Argument list too long (used by us for "more than we can track").
    pub const E2BIG: XenError = XenError(-7);
    /// Retry.
    pub const EAGAIN: XenError = XenError(-11);
    /// Out of memory (also: our IPA space is exhausted).
    pub const ENOMEM: XenError = XenError(-12);
    /// Bad address.
    pub const EFAULT: XenError = XenError(-14);
    /// Mapping or range already present.
    pub const EEXIST: XenError = XenError(-17);
    /// Invalid argument.
    pub const EINVAL: XenError = XenError(-22);
    /// No free ioreq server slot.
    pub const ENOSPC: XenError = XenError(-28);
    /// Hypercall not compiled in (dm_op without `CONFIG_IOREQ_SERVER`).
    pub const ENOSYS: XenError = XenError(-38);
    /// Operation not supported.
    pub const EOPNOTSUPP: XenError = XenError(-95);

    /// Turns a raw hypercall result into `Ok(value)` (>= 0) or the error.
    pub fn check(ret: i64) -> Result<u64, XenError> {
        if ret < 0 {
            Err(XenError(ret))
        } else {
            Ok(ret as u64)
        }
    }

    /// The errno's symbolic name, or `"E?"` for one this table does not know.
    pub fn name(self) -> &'static str {
        match -self.0 {
            1 => "EPERM",
            2 => "ENOENT",
            3 => "ESRCH",
            4 => "EINTR",
            5 => "EIO",
            7 => "E2BIG",
            11 => "EAGAIN",
            12 => "ENOMEM",
            13 => "EACCES",
            14 => "EFAULT",
            16 => "EBUSY",
            17 => "EEXIST",
            19 => "ENODEV",
            22 => "EINVAL",
            28 => "ENOSPC",
            34 => "ERANGE",
            38 => "ENOSYS",
            61 => "ENODATA",
            85 => "ERESTART",
            95 => "EOPNOTSUPP",
            110 => "ETIMEDOUT",
            _ => "E?",
        }
    }
}

impl fmt::Display for XenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

impl fmt::Debug for XenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "XenError({self})")
    }
}

/// A failed grant operation: its per-entry `GNTST_*` status.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct GrantStatus(pub i16);

impl GrantStatus {
    /// The status's symbolic name.
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "GNTST_okay",
            -1 => "GNTST_general_error",
            -2 => "GNTST_bad_domain",
            -3 => "GNTST_bad_gntref",
            -4 => "GNTST_bad_handle",
            -5 => "GNTST_bad_virt_addr",
            -6 => "GNTST_bad_dev_addr",
            -7 => "GNTST_no_device_space",
            -8 => "GNTST_permission_denied",
            -9 => "GNTST_bad_page",
            -10 => "GNTST_bad_copy_arg",
            -11 => "GNTST_address_too_big",
            -12 => "GNTST_eagain",
            -13 => "GNTST_no_space",
            _ => "GNTST_?",
        }
    }
}

impl fmt::Display for GrantStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

impl fmt::Debug for GrantStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GrantStatus({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn names_and_display() {
        assert_eq!(XenError(-38).name(), "ENOSYS");
        assert_eq!(format!("{}", XenError::ENOSYS), "ENOSYS (-38)");
        assert_eq!(format!("{}", XenError::EPERM), "EPERM (-1)");
        assert_eq!(format!("{:?}", XenError(-95)), "XenError(EOPNOTSUPP (-95))");
        assert_eq!(XenError(-9999).name(), "E?");
        assert_eq!(format!("{}", GrantStatus(-3)), "GNTST_bad_gntref (-3)");
    }

    #[test]
    fn check_splits_sign() {
        assert_eq!(XenError::check(0), Ok(0));
        assert_eq!(XenError::check(0x4_0011), Ok(0x4_0011));
        assert_eq!(XenError::check(-22), Err(XenError::EINVAL));
    }
}
