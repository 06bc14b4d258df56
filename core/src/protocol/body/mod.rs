//! JSON bodies of the remoting protocol.
