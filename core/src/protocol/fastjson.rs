//! Lenient reading of the JSON the Java side writes with fastjson.
