//! End-to-end test harness for airf.
