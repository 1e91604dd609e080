//! What each WebAssembly operator costs in fuel, so that fuel alone bounds
//! an evaluation's time: the host's decisions must not depend on how busy
//! the machine is, so the wall-clock deadline is only a backstop far above
//! what the fuel budget can buy.
//!
//! wasmtime's default charges one unit per operator (control flow free),
//! and one per byte or element for bulk operators. Measured on these
//! machines (2 cores, one kept busy; `cargo bench -p chaperone-tests
//! --bench stop`, the whole budget of 20M spent in one loop per way to
//! spin) that costs 0.6-1.8 ns per unit for arithmetic, calls, loads and
//! stores, but 8.9 ns per unit for a loop of `memory.grow 0` (each grow
//! calls out of compiled code into the runtime and its resource limiter),
//! 11 ns growing by a page until refused, 5.3 ns for `table.grow 0` and
//! 1.5 ns for zero-length bulk operations (a call out each time): a module
//! could make 20M fuel last 230 ms on a quiet machine. The prices below
//! charge those operators by their work, so that no way to spin found
//! costs more than about 2 ns per unit: the budget buys at most ~40 ms.
//! Divisions and square roots, slow and not pipelined, cost more as well.
//!
//! Prices only ever go up from wasmtime's: what a module may do within its
//! budget shrinks, never grows. The built-in modules use a few tens of
//! thousands of units per decision, so none is near the budget.

use wasmtime::OperatorCost;

/// A call out of compiled code into the runtime (growing memory or a table,
/// bulk memory and table operations): priced by what it costs.
const RUNTIME_CALL: u8 = 32;

/// A bulk operation's call out, before its per-byte cost.
const BULK_CALL: u8 = 8;

/// A division or square root of floats (tens of cycles, one at a time).
const FLOAT_DIV: u8 = 4;

/// The same on a vector of lanes: each lane is one.
const VECTOR_DIV: u8 = 8;

/// An integer division or remainder.
const INT_DIV: u8 = 4;

/// The fuel prices the host's engine is configured with.
pub fn operator_cost() -> OperatorCost {
    let mut cost = OperatorCost::new();
    cost.MemoryGrow = RUNTIME_CALL;
    cost.TableGrow = RUNTIME_CALL;
    cost.MemoryFill = BULK_CALL;
    cost.MemoryCopy = BULK_CALL;
    cost.MemoryInit = BULK_CALL;
    cost.DataDrop = BULK_CALL;
    cost.TableFill = BULK_CALL;
    cost.TableCopy = BULK_CALL;
    cost.TableInit = BULK_CALL;
    cost.ElemDrop = BULK_CALL;
    cost.F32Div = FLOAT_DIV;
    cost.F64Div = FLOAT_DIV;
    cost.F32Sqrt = FLOAT_DIV;
    cost.F64Sqrt = FLOAT_DIV;
    cost.F32x4Div = VECTOR_DIV;
    cost.F64x2Div = VECTOR_DIV;
    cost.F32x4Sqrt = VECTOR_DIV;
    cost.F64x2Sqrt = VECTOR_DIV;
    cost.I32DivS = INT_DIV;
    cost.I32DivU = INT_DIV;
    cost.I32RemS = INT_DIV;
    cost.I32RemU = INT_DIV;
    cost.I64DivS = INT_DIV;
    cost.I64DivU = INT_DIV;
    cost.I64RemS = INT_DIV;
    cost.I64RemU = INT_DIV;
    // A page of memory is 64 KiB that the module may then touch; a table
    // element is a pointer to set.
    cost.variable.memory_grow_per_page = 64;
    cost.variable.table_grow_per_element = 1;
    cost
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_only_go_up() {
        let ours = operator_cost();
        let default = OperatorCost::new();
        let ops = [
            wasmparser::Operator::MemoryGrow { mem: 0 },
            wasmparser::Operator::TableGrow { table: 0 },
            wasmparser::Operator::F64Div,
            wasmparser::Operator::I64RemU,
            wasmparser::Operator::Br { relative_depth: 0 },
            wasmparser::Operator::Call { function_index: 0 },
        ];
        for op in &ops {
            assert!(ours.cost(op) >= default.cost(op), "{op:?}");
        }
        assert_eq!(ours.cost(&wasmparser::Operator::MemoryGrow { mem: 0 }), 32);
    }
}
