import CKernels

/// Float32 activations narrowed for a slow link: to half precision, or to int8 with one scale
/// per tensor (the largest magnitude maps to 127). The loops live in CKernels; the reference
/// twins the tests compare them with are in `Reference`.
public enum Narrowing {
    public static func toHalf(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<UInt16>, count: Int) { sluice_to_half(x, y, count) }

    public static func fromHalf(_ x: UnsafePointer<UInt16>, _ y: UnsafeMutablePointer<Float>, count: Int) { sluice_from_half(x, y, count) }

    /// The largest magnitude (NaN when any value is NaN, 0 for none).
    public static func maximumMagnitude(_ x: UnsafePointer<Float>, count: Int) -> Float { sluice_max_abs(x, count) }

    /// The scale int8 values are multiplied by to come back: the largest magnitude over 127.
    public static func int8Scale(maximumMagnitude: Float) -> Float { maximumMagnitude / 127 }

    /// `y[i] = clamp(round(x[i] · 127 / maximumMagnitude), −127, 127)`; all zero when the
    /// largest magnitude is 0.
    public static func toInt8(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Int8>, count: Int, maximumMagnitude: Float) {
        sluice_to_int8(x, y, count, maximumMagnitude > 0 ? 127 / maximumMagnitude : 0)
    }

    public static func fromInt8(_ x: UnsafePointer<Int8>, _ y: UnsafeMutablePointer<Float>, count: Int, scale: Float) {
        sluice_from_int8(x, y, count, scale)
    }

    /// Adds Σ (exact − x̃)² to `error` and Σ exact² to `norm`, x̃ being each half widened back.
    public static func accumulateHalfError(exact: UnsafePointer<Float>, halves: UnsafePointer<UInt16>, count: Int,
                                           error: inout Double, norm: inout Double) {
        sluice_half_squared_error(exact, halves, count, &error, &norm)
    }

    /// The same for int8 values times `scale`.
    public static func accumulateInt8Error(exact: UnsafePointer<Float>, narrowed: UnsafePointer<Int8>, count: Int, scale: Float,
                                           error: inout Double, norm: inout Double) {
        sluice_int8_squared_error(exact, narrowed, count, scale, &error, &norm)
    }
}

extension ReferenceKernels {
    /// Half precision by Swift's own `Float16` conversion (IEEE 754, nearest even).
    public static func toHalf(_ x: [Float]) -> [UInt16] { x.map { Float16($0).bitPattern } }

    public static func fromHalf(_ x: [UInt16]) -> [Float] { x.map { Float(Float16(bitPattern: $0)) } }

    public static func toInt8(_ x: [Float], maximumMagnitude: Float) -> [Int8] {
        let inverse: Float = maximumMagnitude > 0 ? 127 / maximumMagnitude : 0
        return x.map { Int8(min(127, max(-127, ($0 * inverse).rounded(.toNearestOrEven)))) }
    }

    public static func fromInt8(_ x: [Int8], scale: Float) -> [Float] { x.map { Float($0) * scale } }
}
