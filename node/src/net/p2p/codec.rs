//! The direct-message protocol `/phalanx/<chain_id>/direct/1`.
//!
//! One request per substream: a channel tag byte (0 consensus,
//! 1 transactions, 2 sync), the payload length as a big-endian `u32`, then
//! the payload. The response is a one-byte ack (`0`). A length over the
//! limit is refused as soon as the header is read, before anything is
//! allocated. A refused request is returned as a value
//! (`Ok(Err(DirectCodecError))`), not as an I/O error, because
//! request-response reports no event for a request that fails to decode:
//! this way the network learns which peer sent it, counts it and reports
//! the peer, then drops the stream without an ack.

use crate::net::Channel;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use std::io;

/// The ack byte a receiver answers with.
const ACK: u8 = 0;

/// A direct message as it travels: the channel it is for and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DirectMessage {
    pub channel: Channel,
    pub bytes: Vec<u8>,
}

/// Why a request or response was refused while decoding. A refused request
/// is a [`DirectRequest`] value; other refusals are wrapped in an
/// [`io::Error`] of kind `InvalidData` (see [`DirectCodecError::of`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum DirectCodecError {
    #[error("direct message of {size} bytes exceeds the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("unknown channel tag {tag}")]
    UnknownChannel { tag: u8 },
    #[error("the ack byte is {byte}, expected {ACK}")]
    BadAck { byte: u8 },
}

impl DirectCodecError {
    /// The codec error inside an I/O error, if that is what it is.
    #[cfg(test)]
    pub fn of(error: &io::Error) -> Option<&DirectCodecError> {
        error.get_ref()?.downcast_ref::<DirectCodecError>()
    }

    fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }
}

pub(super) fn channel_tag(channel: Channel) -> u8 {
    match channel {
        Channel::Consensus => 0,
        Channel::Transactions => 1,
        Channel::Sync => 2,
    }
}

pub(super) fn channel_of_tag(tag: u8) -> Option<Channel> {
    match tag {
        0 => Some(Channel::Consensus),
        1 => Some(Channel::Transactions),
        2 => Some(Channel::Sync),
        _ => None,
    }
}

/// A request as read: the message, or why the peer's request was refused
/// (the stream is left unread past the header). Writing an `Err` fails.
pub(super) type DirectRequest = Result<DirectMessage, DirectCodecError>;

/// The codec, holding the size limit (the node's `max_message_bytes`).
#[derive(Debug, Clone, Copy)]
pub(super) struct DirectCodec {
    pub max_message_bytes: usize,
}

impl libp2p::request_response::Codec for DirectCodec {
    type Protocol = StreamProtocol;
    type Request = DirectRequest;
    type Response = ();

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<DirectRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut header = [0u8; 5];
        io.read_exact(&mut header).await?;
        let [tag, l0, l1, l2, l3] = header;
        let Some(channel) = channel_of_tag(tag) else {
            return Ok(Err(DirectCodecError::UnknownChannel { tag }));
        };
        let size = u32::from_be_bytes([l0, l1, l2, l3]) as usize;
        if size > self.max_message_bytes {
            let limit = self.max_message_bytes;
            return Ok(Err(DirectCodecError::TooLarge { size, limit }));
        }
        let mut bytes = vec![0u8; size];
        io.read_exact(&mut bytes).await?;
        Ok(Ok(DirectMessage { channel, bytes }))
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<()>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut byte = [0u8; 1];
        io.read_exact(&mut byte).await?;
        match byte {
            [ACK] => Ok(()),
            [byte] => Err(DirectCodecError::BadAck { byte }.into_io()),
        }
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: DirectRequest,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let request =
            request.map_err(|refused| io::Error::new(io::ErrorKind::InvalidInput, refused))?;
        // The handle refuses oversize messages before they are queued; this
        // keeps the wire format honest if that check is ever bypassed.
        let size = request.bytes.len();
        let limit = self.max_message_bytes;
        let too_large = || DirectCodecError::TooLarge { size, limit }.into_io();
        if size > limit {
            return Err(too_large());
        }
        let length = u32::try_from(size).map_err(|_| too_large())?;
        let [l0, l1, l2, l3] = length.to_be_bytes();
        io.write_all(&[channel_tag(request.channel), l0, l1, l2, l3])
            .await?;
        io.write_all(&request.bytes).await?;
        io.close().await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, _: ()) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&[ACK]).await?;
        io.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use futures::io::Cursor;
    use libp2p::request_response::Codec;

    fn protocol() -> StreamProtocol {
        StreamProtocol::new("/phalanx/test/direct/1")
    }

    fn encode(codec: &mut DirectCodec, message: DirectMessage) -> io::Result<Vec<u8>> {
        let mut out = Cursor::new(Vec::new());
        block_on(codec.write_request(&protocol(), &mut out, Ok(message)))?;
        Ok(out.into_inner())
    }

    fn decode(codec: &mut DirectCodec, wire: Vec<u8>) -> io::Result<DirectRequest> {
        block_on(codec.read_request(&protocol(), &mut Cursor::new(wire)))
    }

    #[test]
    fn round_trip_on_every_channel() {
        let mut codec = DirectCodec {
            max_message_bytes: 16,
        };
        for channel in Channel::ALL {
            for bytes in [vec![], vec![7; 16]] {
                let message = DirectMessage {
                    channel,
                    bytes: bytes.clone(),
                };
                let wire = encode(&mut codec, message.clone()).unwrap();
                assert_eq!(wire.len(), 5 + bytes.len());
                assert_eq!(wire[0], channel_tag(channel));
                assert_eq!(decode(&mut codec, wire).unwrap(), Ok(message));
            }
        }
    }

    #[test]
    fn oversize_is_refused_on_both_sides() {
        let mut codec = DirectCodec {
            max_message_bytes: 16,
        };
        let message = DirectMessage {
            channel: Channel::Sync,
            bytes: vec![1; 17],
        };
        let error = encode(&mut codec, message).unwrap_err();
        assert_eq!(
            DirectCodecError::of(&error),
            Some(&DirectCodecError::TooLarge {
                size: 17,
                limit: 16
            })
        );
        // A header announcing 4 GiB - 1 with no body: refused from the
        // header alone, without allocating or waiting for the body.
        assert_eq!(
            decode(&mut codec, vec![2, 0xff, 0xff, 0xff, 0xff]).unwrap(),
            Err(DirectCodecError::TooLarge {
                size: u32::MAX as usize,
                limit: 16
            })
        );
        // Nor can a refusal be written.
        let mut out = Cursor::new(Vec::new());
        let refused = Err(DirectCodecError::UnknownChannel { tag: 9 });
        let error = block_on(codec.write_request(&protocol(), &mut out, refused)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert!(out.into_inner().is_empty());
    }

    #[test]
    fn unknown_tags_and_truncation_are_refused() {
        let mut codec = DirectCodec {
            max_message_bytes: 16,
        };
        assert_eq!(
            decode(&mut codec, vec![3, 0, 0, 0, 0]).unwrap(),
            Err(DirectCodecError::UnknownChannel { tag: 3 })
        );
        // A body shorter than announced is a stream error, not a codec one.
        let error = decode(&mut codec, vec![0, 0, 0, 0, 4, 1, 2]).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(DirectCodecError::of(&error), None);
    }

    #[test]
    fn acks() {
        let mut codec = DirectCodec {
            max_message_bytes: 16,
        };
        let mut out = Cursor::new(Vec::new());
        block_on(codec.write_response(&protocol(), &mut out, ())).unwrap();
        let wire = out.into_inner();
        assert_eq!(wire, vec![ACK]);
        block_on(codec.read_response(&protocol(), &mut Cursor::new(wire))).unwrap();
        let error =
            block_on(codec.read_response(&protocol(), &mut Cursor::new(vec![9]))).unwrap_err();
        assert_eq!(
            DirectCodecError::of(&error),
            Some(&DirectCodecError::BadAck { byte: 9 })
        );
    }
}
