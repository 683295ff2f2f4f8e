"""Parsing of the client requests the simulator acts on (as ib_insync/ib_async send them)."""

from __future__ import annotations

from dataclasses import dataclass

from .market import ContractQuery
from .orders import OrderRequest

CONTRACT_FIELDS = 12  # conId .. tradingClass, with primaryExchange


class RequestError(ValueError):
    """A request could not be parsed."""


def to_int(text: str, default: int = 0) -> int:
    """An int field; empty means default."""
    try:
        return int(float(text)) if text else default
    except ValueError:
        return default


def to_float(text: str) -> float | None:
    """A float field; empty or IB's unset double means None."""
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return None if value > 1e300 else value


class Cursor:
    """Reads fields in order, tolerating a short message."""

    def __init__(self, fields: list[str], start: int = 0) -> None:
        self.fields = fields
        self.pos = start

    def next(self) -> str:
        """The next field, or empty past the end."""
        value = self.fields[self.pos] if self.pos < len(self.fields) else ""
        self.pos += 1
        return value

    def skip(self, n: int) -> None:
        """Skip n fields."""
        self.pos += n


def parse_contract(fields: list[str], start: int) -> ContractQuery:
    """The 12 contract fields the client sends from index start."""
    cur = Cursor(fields, start)
    con_id = to_int(cur.next())
    symbol = cur.next()
    sec_type = cur.next()
    cur.skip(4)  # expiry, strike, right, multiplier
    exchange = cur.next()
    primary = cur.next()
    currency = cur.next()
    return ContractQuery(con_id, symbol, sec_type, exchange, primary, currency)


@dataclass
class MarketDataRequest:
    """reqMktData: request id, contract and whether it is a snapshot."""

    req_id: int
    contract: ContractQuery
    snapshot: bool


def parse_market_data(fields: list[str]) -> MarketDataRequest:
    """1,11,reqId,<contract>,[legs],dncFlag,[dnc],genericTicks,snapshot,regulatory,options."""
    req_id = to_int(fields[2])
    contract = parse_contract(fields, 3)
    cur = Cursor(fields, 3 + CONTRACT_FIELDS)
    if contract.sec_type == "BAG":
        cur.skip(4 * to_int(cur.next()))
    if to_int(cur.next()):
        cur.skip(3)
    cur.next()  # generic tick list
    snapshot = cur.next() == "1"
    return MarketDataRequest(req_id, contract, snapshot)


@dataclass
class ExecutionFilter:
    """reqExecutions filter; empty values match everything."""

    client_id: int
    account: str
    symbol: str
    sec_type: str
    side: str


def parse_exec_filter(fields: list[str]) -> tuple[int, ExecutionFilter]:
    """7,3,reqId,clientId,acctCode,time,symbol,secType,exchange,side."""
    cur = Cursor(fields, 2)
    req_id = to_int(cur.next())
    client_id = to_int(cur.next())
    account = cur.next()
    cur.next()  # time
    symbol = cur.next()
    sec_type = cur.next()
    cur.next()  # exchange
    side = cur.next()
    return req_id, ExecutionFilter(client_id, account, symbol, sec_type, side)


def _skip_to_what_if(cur: Cursor, version: int) -> bool:
    """Walk the variable part of placeOrder after 'hidden' and return the whatIf flag."""
    cur.skip(7 if version < 177 else 6)  # '' .. faPercentage[, faProfile]
    cur.skip(20)  # modelCode .. overridePercentageConstraints
    cur.skip(2)  # volatility, volatilityType
    if cur.next():  # deltaNeutralOrderType
        cur.skip(9)
    else:
        cur.skip(1)
    cur.skip(6)  # continuousUpdate .. scaleSubsLevelSize
    increment = to_float(cur.next())
    if increment is not None and increment > 0:
        cur.skip(7)
    cur.skip(3)  # scaleTable, activeStartTime, activeStopTime
    if cur.next():  # hedgeType
        cur.skip(1)
    cur.skip(4)  # optOutSmartRouting .. notHeld
    if to_int(cur.next()):  # delta neutral contract
        cur.skip(3)
    if cur.next():  # algoStrategy
        cur.skip(2 * to_int(cur.next()))
    cur.next()  # algoId
    return cur.next() == "1"


def parse_place_order(fields: list[str], version: int) -> OrderRequest:
    """placeOrder as ib_insync 0.9.86 and ib_async 2.1.0 send it (no combo orders)."""
    if len(fields) < 35:
        raise RequestError("placeOrder message is too short")
    contract = parse_contract(fields, 2)
    if contract.sec_type == "BAG":
        raise RequestError("combo orders are not supported by simulator")
    cur = Cursor(fields, 2 + CONTRACT_FIELDS + 2)  # after secIdType, secId
    action = cur.next().upper()
    quantity = to_float(cur.next()) or 0.0
    order_type = cur.next().upper()
    lmt_price = to_float(cur.next())
    aux_price = to_float(cur.next())
    tif = cur.next() or "DAY"
    cur.next()  # ocaGroup
    account = cur.next()
    cur.skip(2)  # openClose, origin
    order_ref = cur.next()
    transmit = cur.next() != "0"
    parent_id = to_int(cur.next())
    cur.skip(4)  # blockOrder, sweepToFill, displaySize, triggerMethod
    outside_rth = cur.next() == "1"
    cur.next()  # hidden
    what_if = _skip_to_what_if(cur, version)
    return OrderRequest(
        order_id=to_int(fields[1]),
        symbol=contract.symbol,
        con_id=contract.con_id,
        sec_type=contract.sec_type,
        exchange=contract.exchange,
        primary_exchange=contract.primary_exchange,
        currency=contract.currency,
        action=action,
        quantity=quantity,
        order_type=order_type,
        lmt_price=lmt_price,
        aux_price=aux_price,
        tif=tif,
        account=account,
        order_ref=order_ref,
        outside_rth=outside_rth,
        what_if=what_if,
        transmit=transmit,
        parent_id=parent_id,
    )
