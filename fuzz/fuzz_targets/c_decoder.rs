//! The decoder of the C ABI (`gopro_decoder_*` in include/gopro.h), fed
//! the stream in arbitrary chunks with `next`, `next_many` and `finish`
//! calls in between: every status is the one the frames fed so far call
//! for, errors stick, and the frames handed out are those of the Rust
//! decoder ([`gopro_fuzz::expected`], checked against it by `decode`).
#![no_main]

use std::ptr;

use gopro_c::{
    gopro_decoder, gopro_decoder_feed, gopro_decoder_finish, gopro_decoder_free, gopro_decoder_new,
    gopro_decoder_next, gopro_decoder_next_many, gopro_frame_view, gopro_last_error_message,
    gopro_status, GOPRO_ANY_VERSION,
};
use gopro_fuzz::{expected, CCall, CInput, Ending, Outcome, Settings};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: CInput<'_>| {
    let settings = Settings::from_byte(input.settings);
    let want = expected(settings, input.data);
    let mut d = Driver::new(settings, input.data, &want);
    for call in input.steps.iter().take(256) {
        match *call {
            CCall::Feed(n) => d.feed(usize::from(n)),
            CCall::Next => d.next(),
            CCall::NextMany(cap) => d.next_many(usize::from(cap)),
            CCall::Finish => d.finish(),
        }
    }
    // Then the rest of the stream, and every frame out of it.
    d.feed(input.data.len());
    while d.failed.is_none() && d.available() > 0 {
        if d.taken.is_multiple_of(2) {
            d.next();
        } else {
            d.next_many(3);
        }
    }
    d.next();
    d.finish();
    assert_eq!(d.taken, want.frames.len());
    match want.ending {
        Ending::End | Ending::Partial { .. } => assert_eq!(d.failed, None),
        Ending::Error { .. } => assert!(d.failed.is_some()),
    }
});

/// A C decoder and what it should do next.
struct Driver<'a> {
    decoder: *mut gopro_decoder,
    data: &'a [u8],
    want: &'a Outcome,
    /// Bytes of `data` fed so far.
    fed: usize,
    /// Frames taken so far.
    taken: usize,
    /// The decoding error that sticks, once the decoder has met it.
    failed: Option<gopro_status>,
}

impl Drop for Driver<'_> {
    fn drop(&mut self) {
        unsafe { gopro_decoder_free(self.decoder) };
    }
}

fn status_of(error: &gopro::Error) -> gopro_status {
    match error.kind() {
        "bad_magic" => gopro_status::BadMagic,
        "body_too_large" => gopro_status::BodyTooLarge,
        "unsupported_version" => gopro_status::UnsupportedVersion,
        other => panic!("the decoder cannot fail with {other}"),
    }
}

fn last_error_message() -> String {
    let mut buf = vec![0u8; 1024];
    let mut len = 0;
    let status = unsafe { gopro_last_error_message(buf.as_mut_ptr().cast(), buf.len(), &mut len) };
    assert_eq!(status, gopro_status::Ok);
    assert_eq!(buf[len], 0);
    String::from_utf8(buf[..len].to_vec()).expect("UTF-8 message")
}

impl<'a> Driver<'a> {
    fn new(settings: Settings, data: &'a [u8], want: &'a Outcome) -> Driver<'a> {
        let version = settings.version.map_or(GOPRO_ANY_VERSION, i32::from);
        let mut decoder = ptr::null_mut();
        let status = unsafe { gopro_decoder_new(settings.max_body, version, &mut decoder) };
        assert_eq!(status, gopro_status::Ok);
        assert!(!decoder.is_null());
        Driver {
            decoder,
            data,
            want,
            fed: 0,
            taken: 0,
            failed: None,
        }
    }

    /// Whole frames fed and not yet taken.
    fn available(&self) -> usize {
        self.want.frames[self.taken..]
            .iter()
            .take_while(|f| f.end <= self.fed)
            .count()
    }

    /// The decoding error the decoder meets next, if its header is all fed
    /// and every frame before it taken.
    fn error_due(&self) -> Option<&'a gopro::Error> {
        match &self.want.ending {
            Ending::Error { start, error }
                if self.taken == self.want.frames.len() && start + 8 <= self.fed =>
            {
                Some(error)
            }
            _ => None,
        }
    }

    /// Checks a status returned while the error sticks.
    fn check_sticky(&self, status: gopro_status) {
        assert_eq!(Some(status), self.failed);
        let Ending::Error { error, .. } = &self.want.ending else {
            unreachable!()
        };
        assert_eq!(last_error_message(), error.to_string());
    }

    fn meet_error(&mut self, status: gopro_status, error: &gopro::Error) {
        assert_eq!(status, status_of(error));
        assert_eq!(last_error_message(), error.to_string());
        self.failed = Some(status);
    }

    fn feed(&mut self, n: usize) {
        let n = n.min(self.data.len() - self.fed);
        let bytes = if n == 0 {
            ptr::null()
        } else {
            self.data[self.fed..].as_ptr()
        };
        let status = unsafe { gopro_decoder_feed(self.decoder, bytes, n) };
        if self.failed.is_some() {
            return self.check_sticky(status);
        }
        assert_eq!(status, gopro_status::Ok);
        self.fed += n;
    }

    fn check_frame(&self, command: u8, version: Option<u8>, body: *const u8, len: usize) {
        let want = &self.want.frames[self.taken].frame;
        assert_eq!(command, want.command.code());
        if let Some(version) = version {
            assert_eq!(version, want.version);
        }
        assert_eq!(len, want.body.len());
        if len == 0 {
            assert!(body.is_null());
        } else {
            assert!(!body.is_null());
            let got = unsafe { std::slice::from_raw_parts(body, len) };
            assert_eq!(got, &want.body[..]);
        }
    }

    fn next(&mut self) {
        let mut command = 0xAA;
        let mut version = 0xAA;
        let mut body = ptr::null();
        let mut len = usize::MAX;
        // `out_version` is optional: leave it out every other time.
        let out_version = if self.taken % 2 == 1 {
            ptr::null_mut()
        } else {
            &mut version as *mut u8
        };
        let status = unsafe {
            gopro_decoder_next(self.decoder, &mut command, out_version, &mut body, &mut len)
        };
        if self.failed.is_some() {
            return self.check_sticky(status);
        }
        if self.available() > 0 {
            assert_eq!(status, gopro_status::Ok);
            let version = (!out_version.is_null()).then_some(version);
            self.check_frame(command, version, body, len);
            self.taken += 1;
        } else if let Some(error) = self.error_due() {
            self.meet_error(status, error);
        } else {
            assert_eq!(status, gopro_status::NeedMore);
            // Out-parameters are written only on success.
            assert_eq!((command, len), (0xAA, usize::MAX));
        }
    }

    fn next_many(&mut self, capacity: usize) {
        let mut views: Vec<gopro_frame_view> = (0..capacity.max(1))
            .map(|_| gopro_frame_view {
                command: 0,
                version: 0,
                body: ptr::null(),
                body_len: 0,
            })
            .collect();
        let mut count = usize::MAX;
        let status = unsafe {
            gopro_decoder_next_many(self.decoder, views.as_mut_ptr(), capacity, &mut count)
        };
        if capacity == 0 {
            assert_eq!(status, gopro_status::InvalidArgument);
            return;
        }
        if self.failed.is_some() {
            return self.check_sticky(status);
        }
        let available = self.available();
        if available == 0 {
            if let Some(error) = self.error_due() {
                self.meet_error(status, error);
            } else {
                assert_eq!(status, gopro_status::NeedMore);
                assert_eq!(count, usize::MAX);
            }
            return;
        }
        assert_eq!(status, gopro_status::Ok);
        assert_eq!(count, available.min(capacity));
        for view in &views[..count] {
            self.check_frame(view.command, Some(view.version), view.body, view.body_len);
            self.taken += 1;
        }
        // An error right after the frames is met now and reported next time.
        if count < capacity {
            if let Some(error) = self.error_due() {
                self.failed = Some(status_of(error));
            }
        }
    }

    fn finish(&mut self) {
        let status = unsafe { gopro_decoder_finish(self.decoder) };
        if self.failed.is_some() {
            return self.check_sticky(status);
        }
        let taken_end = self.want.frames[..self.taken].last().map_or(0, |f| f.end);
        if self.fed > taken_end {
            assert_eq!(status, gopro_status::UnexpectedEof);
        } else {
            assert_eq!(status, gopro_status::Ok);
        }
    }
}
