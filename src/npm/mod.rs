//! The npm adapter (in progress)
