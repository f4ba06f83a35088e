import BreakwaterFuzzOracles
import FuzzDriver

/// libFuzzer's entry point: the input must pass `chunkedOracle` (Sources/BreakwaterFuzzOracles in the main package).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size))
    if let problem = chunkedOracle(bytes) { fatalError(problem) }
    return 0
}

/// SwiftPM links an executable's `main` to `<module>_main`; hand control to libFuzzer's driver.
@_cdecl("FuzzChunked_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runLibFuzzer(argc, argv, fuzzOne)
}
