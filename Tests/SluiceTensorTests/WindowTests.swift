import SluiceTensor
import Testing

@Suite struct WindowTests {
    @Test func explicitPadsStridesAndDilations() throws {
        let g = try KernelGeometry(input: [10, 7], kernel: [3, 2], strides: [2, 3], dilations: [2, 1], pads: [1, 0, 2, 1])
        // floor((10 + 1 + 2 − 5) / 2) + 1 = 5 and floor((7 + 0 + 1 − 2) / 3) + 1 = 3
        #expect(g.output == [5, 3])
        #expect(g.padsBegin == [1, 0] && g.padsEnd == [2, 1])
    }

    @Test func ceilModeDropsAWindowStartingInThePadding() throws {
        #expect(try KernelGeometry(input: [5], kernel: [2], strides: [2], ceilMode: true).output == [3])
        #expect(try KernelGeometry(input: [5], kernel: [2], strides: [2]).output == [2])
        // With end padding 1: ceil((6 − 2) / 2) + 1 = 3, and the third window starts at 4 < 5: kept.
        #expect(try KernelGeometry(input: [5], kernel: [2], strides: [2], pads: [0, 1], ceilMode: true).output == [3])
        // ceil((5 + 1 + 1 − 3) / 3) + 1 = 3, but the third window would start at 6 − 1 = 5, past the input: dropped.
        #expect(try KernelGeometry(input: [5], kernel: [3], strides: [3], pads: [1, 1], ceilMode: true).output == [2])
        // Without padding the partial second window (3, 4 and one past the end) is kept.
        #expect(try KernelGeometry(input: [5], kernel: [3], strides: [3], ceilMode: true).output == [2])
        #expect(try KernelGeometry(input: [5], kernel: [3], strides: [3]).output == [1])
    }

    @Test func autoPad() throws {
        let upper = try KernelGeometry(input: [7], kernel: [4], strides: [2], autoPad: .sameUpper)
        #expect(upper.output == [4] && upper.padsBegin == [1] && upper.padsEnd == [2])
        let lower = try KernelGeometry(input: [7], kernel: [4], strides: [2], autoPad: .sameLower)
        #expect(lower.output == [4] && lower.padsBegin == [2] && lower.padsEnd == [1])
        let valid = try KernelGeometry(input: [7], kernel: [4], strides: [2], pads: [5, 5], autoPad: .valid)
        #expect(valid.output == [2] && valid.padsBegin == [0] && valid.padsEnd == [0])
    }

    @Test func rejectsWindowsLargerThanTheInput() {
        #expect(throws: ShapeError.self) { try KernelGeometry(input: [3], kernel: [5]) }
        #expect(throws: ShapeError.self) { try KernelGeometry(input: [3], kernel: [2], dilations: [3]) }
        #expect(throws: ShapeError.self) { try KernelGeometry(input: [3], kernel: [2], strides: [0]) }
        #expect(throws: ShapeError.self) { try KernelGeometry(input: [3, 3], kernel: [2]) }
    }
}
