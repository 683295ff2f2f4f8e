"""Message ids and the exact field layouts of every message the simulator sends.

All layouts live here, so that field counts can be checked in one place. Each builder
returns the list of fields of one message for the negotiated server version
(157..178). The clients unpack several messages into exact tuples, and a message with a
wrong field count is dropped by them, so tests decode every layout with both clients.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .market import Instrument
from .protocol import UNSET_DOUBLE_TEXT, Field

# ---------------------------------------------------------------- incoming message ids

IN_MESSAGE_IDS: dict[str, int] = {
    "reqMktData": 1,
    "cancelMktData": 2,
    "placeOrder": 3,
    "cancelOrder": 4,
    "reqOpenOrders": 5,
    "reqAccountUpdates": 6,
    "reqExecutions": 7,
    "reqIds": 8,
    "reqContractDetails": 9,
    "reqMktDepth": 10,
    "cancelMktDepth": 11,
    "reqNewsBulletins": 12,
    "cancelNewsBulletins": 13,
    "setServerLogLevel": 14,
    "reqAutoOpenOrders": 15,
    "reqAllOpenOrders": 16,
    "reqManagedAccts": 17,
    "requestFA": 18,
    "replaceFA": 19,
    "reqHistoricalData": 20,
    "exerciseOptions": 21,
    "reqScannerSubscription": 22,
    "cancelScannerSubscription": 23,
    "reqScannerParameters": 24,
    "cancelHistoricalData": 25,
    "reqCurrentTime": 49,
    "reqRealTimeBars": 50,
    "cancelRealTimeBars": 51,
    "reqFundamentalData": 52,
    "cancelFundamentalData": 53,
    "calculateImpliedVolatility": 54,
    "calculateOptionPrice": 55,
    "cancelCalculateImpliedVolatility": 56,
    "cancelCalculateOptionPrice": 57,
    "reqGlobalCancel": 58,
    "reqMarketDataType": 59,
    "reqPositions": 61,
    "reqAccountSummary": 62,
    "cancelAccountSummary": 63,
    "cancelPositions": 64,
    "verifyRequest": 65,
    "verifyMessage": 66,
    "queryDisplayGroups": 67,
    "subscribeToGroupEvents": 68,
    "updateDisplayGroup": 69,
    "unsubscribeFromGroupEvents": 70,
    "startApi": 71,
    "verifyAndAuthRequest": 72,
    "verifyAndAuthMessage": 73,
    "reqPositionsMulti": 74,
    "cancelPositionsMulti": 75,
    "reqAccountUpdatesMulti": 76,
    "cancelAccountUpdatesMulti": 77,
    "reqSecDefOptParams": 78,
    "reqSoftDollarTiers": 79,
    "reqFamilyCodes": 80,
    "reqMatchingSymbols": 81,
    "reqMktDepthExchanges": 82,
    "reqSmartComponents": 83,
    "reqNewsArticle": 84,
    "reqNewsProviders": 85,
    "reqHistoricalNews": 86,
    "reqHeadTimeStamp": 87,
    "reqHistogramData": 88,
    "cancelHistogramData": 89,
    "cancelHeadTimeStamp": 90,
    "reqMarketRule": 91,
    "reqPnL": 92,
    "cancelPnL": 93,
    "reqPnLSingle": 94,
    "cancelPnLSingle": 95,
    "reqHistoricalTicks": 96,
    "reqTickByTickData": 97,
    "cancelTickByTickData": 98,
    "reqCompletedOrders": 99,
    "reqWshMetaData": 100,
    "cancelWshMetaData": 101,
    "reqWshEventData": 102,
    "cancelWshEventData": 103,
    "reqUserInfo": 104,
}

# Unsupported requests that carry a request id, and the field index holding it.
# The simulator answers these with an error for that id, so the client call ends.
UNSUPPORTED_REQ_ID_INDEX: dict[int, int] = {
    10: 2, 19: 4, 20: 1, 21: 2, 22: 1, 50: 2, 52: 2, 54: 2, 55: 2, 67: 2, 68: 2,
    74: 2, 78: 1, 79: 1, 81: 1, 83: 1, 84: 1, 86: 1, 87: 1, 88: 1, 92: 1, 94: 1,
    96: 1, 97: 1, 100: 1, 102: 1, 104: 1,
}

# Requests that need no answer at all (cancellations, settings, subscriptions to news).
SILENT_REQUESTS = frozenset(
    {11, 12, 13, 14, 15, 23, 25, 51, 53, 56, 57, 65, 66, 69, 70, 72, 73, 75, 89, 90, 93,
     95, 98, 101, 103}
)

# ---------------------------------------------------------------- error codes and texts

UNSUPPORTED_CODE = 10_000
UNSUPPORTED_TEXT = "Request not supported by simulator"
ERR_NO_SECURITY = (200, "No security definition has been found for the request")
ERR_REJECTED = 201
ERR_CANCELLED = (202, "Order Canceled - reason:")
ERR_DUPLICATE_ORDER_ID = (103, "Duplicate order id")
ERR_DUPLICATE_CLIENT_ID = (
    326,
    "Unable to connect as the client id is already in use. Retry with a unique client id.",
)
ERR_UNSUPPORTED_ORDER = (387, "Unsupported order type for this exchange and security type.")
ERR_ORDER_NOT_FOUND = 10147
ERR_NOT_SUBSCRIBED = (354, "Requested market data is not subscribed. Delayed market data is "
                           "available.")
WARN_DELAYED = (10167, "Requested market data is not subscribed. Displaying delayed market data.")
FARM_MESSAGES = (
    (2104, "Market data farm connection is OK:usfarm"),
    (2106, "HMDS data farm connection is OK:ushmds"),
    (2158, "Sec-def data farm connection is OK:secdefil"),
)

# ---------------------------------------------------------------- small shared groups

TICK_BID, TICK_ASK, TICK_LAST, TICK_CLOSE, TICK_VOLUME = 1, 2, 4, 9, 8
DELAYED_TICK = {TICK_BID: 66, TICK_ASK: 67, TICK_LAST: 68, TICK_CLOSE: 75, TICK_VOLUME: 74}


def _blank(n: int) -> list[Field]:
    return [""] * n


def contract_fields(inst: Instrument, exchange: str) -> list[Field]:
    """conId, symbol, secType, expiry, strike, right, multiplier, exchange, currency,
    localSymbol, tradingClass (11 fields)."""
    return [inst.con_id, inst.symbol, inst.sec_type, "", 0.0, "", "", exchange,
            inst.currency, inst.symbol, inst.symbol]


def price_text(value: float | None) -> Field:
    """A price field, empty when unset."""
    return "" if value is None else value


# ---------------------------------------------------------------- session start

def handshake_reply(version: int, connection_time: str) -> list[Field]:
    """Exactly 2 fields: server version and connection time."""
    return [version, connection_time]


def managed_accounts(accounts: list[str]) -> list[Field]:
    """15: exactly 3 fields; the list must not be empty."""
    return [15, 1, ",".join(accounts)]


def next_valid_id(order_id: int) -> list[Field]:
    """9: exactly 3 fields."""
    return [9, 1, order_id]


def error(version: int, req_id: int, code: int, text: str) -> list[Field]:
    """4: error or warning for a request id (-1 when none)."""
    fields: list[Field] = [4, 2, req_id, code, text]
    if version >= 166:
        fields.append("")  # advancedOrderRejectJson
    return fields


def current_time(epoch: int) -> list[Field]:
    """49: server time in seconds."""
    return [49, 1, epoch]


# ---------------------------------------------------------------- market data

def market_data_type(req_id: int, data_type: int) -> list[Field]:
    """58: market data type of a ticker request."""
    return [58, 1, req_id, data_type]


def tick_price(req_id: int, tick_type: int, price: float, size: float) -> list[Field]:
    """1: exactly 7 fields (attribute mask last)."""
    return [1, 6, req_id, tick_type, price, size, 0]


def tick_size(req_id: int, tick_type: int, size: float) -> list[Field]:
    """2: a size tick (volume)."""
    return [2, 6, req_id, tick_type, size]


def tick_snapshot_end(req_id: int) -> list[Field]:
    """57: end of a snapshot."""
    return [57, 1, req_id]


# ---------------------------------------------------------------- contract details

def contract_details(version: int, req_id: int, inst: Instrument) -> list[Field]:
    """10: contract details of a stock or ETF (39 fields at 157, 40 from 164 on)."""
    head: list[Field] = [10, 8] if version < 164 else [10]
    fields = [
        *head, req_id, inst.symbol, inst.sec_type, "", 0.0, "", "SMART", inst.currency,
        inst.symbol, inst.symbol, inst.symbol, inst.con_id, 0.01,
    ]
    if version < 164:
        fields.append(1)  # mdSizeMultiplier
    fields += [
        "", "ACTIVETIM,AD,ALERT,ALLOC,DAY,GTC,LMT,MKT,MOC,WHATIF",
        f"SMART,{inst.primary_exchange}", 1, 0, inst.long_name, inst.primary_exchange,
        "", "", "", "", "US/Eastern",
        "20261130:0400-20261130:2000", "20261130:0930-20261130:1600",
        "", "", 0,  # evRule, evMultiplier, numSecIds
        1, "", "", "26,26", "", inst.stock_type,
    ]
    if version == 163:
        fields.append(1)
    if version >= 164:
        fields += [1, 1, 1]  # minSize, sizeIncrement, suggestedSizeIncrement
    return fields


def contract_details_end(req_id: int) -> list[Field]:
    """52: end of contract details."""
    return [52, 1, req_id]


# ---------------------------------------------------------------- accounts and positions

def position(account: str, inst: Instrument, quantity: float, avg_cost: float) -> list[Field]:
    """61: exactly 16 fields."""
    return [61, 3, account, *contract_fields(inst, inst.primary_exchange), quantity, avg_cost]


def position_end() -> list[Field]:
    """62: end of positions."""
    return [62, 1]


def account_value(tag: str, value: str, currency: str, account: str) -> list[Field]:
    """6: one account value."""
    return [6, 2, tag, value, currency, account]


@dataclass
class PortfolioRow:
    """Values of one position for the portfolio message."""

    quantity: float
    market_price: float
    market_value: float
    avg_cost: float
    unrealized_pnl: float
    realized_pnl: float


def portfolio_value(inst: Instrument, row: PortfolioRow, account: str) -> list[Field]:
    """7: exactly 20 fields (contract with primaryExchange in the exchange slot)."""
    return [
        7, 8, *contract_fields(inst, inst.primary_exchange), row.quantity,
        round(row.market_price, 6), round(row.market_value, 2), round(row.avg_cost, 6),
        round(row.unrealized_pnl, 2), round(row.realized_pnl, 2), account,
    ]


def account_time(hhmm: str) -> list[Field]:
    """8: time of the last account update."""
    return [8, 1, hhmm]


def account_download_end(account: str) -> list[Field]:
    """54: end of the account update burst."""
    return [54, 1, account]


def account_update_multi(req_id: int, account: str, tag: str, value: str,
                         currency: str) -> list[Field]:
    """73: one account value for reqAccountUpdatesMulti (empty model code)."""
    return [73, 1, req_id, account, "", tag, value, currency]


def account_update_multi_end(req_id: int) -> list[Field]:
    """74: end of reqAccountUpdatesMulti."""
    return [74, 1, req_id]


def account_summary(req_id: int, account: str, tag: str, value: str,
                    currency: str) -> list[Field]:
    """63: one account summary row."""
    return [63, 1, req_id, account, tag, value, currency]


def account_summary_end(req_id: int) -> list[Field]:
    """64: end of an account summary."""
    return [64, 1, req_id]


# ---------------------------------------------------------------- orders

@dataclass
class OrderView:
    """What an openOrder / completedOrder message says about an order."""

    order_id: int
    client_id: int
    perm_id: int
    account: str
    action: str
    quantity: float
    order_type: str
    lmt_price: float | None
    tif: str
    order_ref: str
    filled: float = 0.0


@dataclass
class OrderStateView:
    """The order state block of openOrder: status, margin figures and commissions."""

    status: str
    margins: list[str] = field(default_factory=lambda: [UNSET_DOUBLE_TEXT] * 9)
    commission: str = UNSET_DOUBLE_TEXT
    min_commission: str = UNSET_DOUBLE_TEXT
    max_commission: str = UNSET_DOUBLE_TEXT
    commission_currency: str = ""
    warning: str = ""


def _order_core(order: OrderView) -> list[Field]:
    return [order.action, order.quantity, order.order_type, price_text(order.lmt_price), "",
            order.tif, "", order.account, "O", 0, order.order_ref]


def _fa_fields(version: int) -> list[Field]:
    """faGroup, faMethod, faPercentage and, before 177, faProfile."""
    return _blank(4 if version < 177 else 3)


def open_order(version: int, inst: Instrument, order: OrderView, state: OrderStateView,
               what_if: bool = False) -> list[Field]:
    """5: an open order (120 fields at 157 for a plain stock order)."""
    fields: list[Field] = [5, order.order_id, *contract_fields(inst, "SMART")]
    fields += _order_core(order)
    fields += [order.client_id, order.perm_id, 0, 0, 0.0, "", ""]  # ..., goodAfterTime, shares
    fields += _fa_fields(version)
    fields += ["", "", "", "", "", 0, "", -1]  # modelCode..designatedLocation, exemptCode
    fields += [0, "", "", "", "", "", "", 0, 0, 0, "", 3, 0, 0, "", 0, 0, "", 0, "", ""]
    # continuousUpdate .. comboLegsDescrip, then combo legs / order legs / params counts
    fields += [0, 0, "", "", 0, 0, "", 0, 0, 0]
    fields += ["", "", ""]  # scaleInitLevelSize, scaleSubsLevelSize, scalePriceIncrement
    fields += [""]  # hedgeType
    fields += [0, "", "", 0, 0]  # optOutSmartRouting .. notHeld, delta neutral present
    fields += [""]  # algoStrategy
    fields += [0, 1 if what_if else 0, state.status, *state.margins, state.commission,
               state.min_commission, state.max_commission, state.commission_currency,
               state.warning, 0, 0]
    fields += [0]  # number of conditions
    fields += ["", "", "", "", "", "", "", 0, "", "", "", "", 0, 0, "", 0]
    if version >= 159:
        fields.append("")  # duration
    if version >= 160:
        fields.append("")  # postToAts
    if version >= 162:
        fields.append(0)  # autoCancelParent
    if version >= 170:
        fields += _blank(5)
    return fields


def open_order_end() -> list[Field]:
    """53: end of open orders."""
    return [53, 1]


def order_status(order_id: int, status: str, filled: float, remaining: float,
                 avg_price: float, perm_id: int, last_price: float,
                 client_id: int) -> list[Field]:
    """3: exactly 12 fields, no version."""
    return [3, order_id, status, filled, remaining, avg_price, perm_id, 0, last_price,
            client_id, "", 0.0]


def completed_order(version: int, inst: Instrument, order: OrderView, status: str,
                    completed_time: str, completed_status: str) -> list[Field]:
    """101: a completed (filled, cancelled or rejected) order."""
    fields: list[Field] = [101, *contract_fields(inst, "SMART")]
    fields += _order_core(order)
    fields += [order.perm_id, 0, 0, 0.0, ""]  # permId, outsideRth, hidden, discr., goodAfter
    fields += _fa_fields(version)
    fields += ["", "", "", "", "", 0, "", -1]  # modelCode .. exemptCode
    fields += ["", "", "", "", "", "", 0, 0, "", 3, 0, "", 0, "", ""]
    fields += [0, 0, "", "", ""]  # continuousUpdate .. comboLegsDescrip
    fields += [0, 0, 0]  # combo legs, order combo legs, smart combo routing params
    fields += ["", "", ""]  # scale fields
    fields += [""]  # hedgeType
    fields += ["", "", 0, 0]  # clearingAccount, clearingIntent, notHeld, dnc present
    fields += [""]  # algoStrategy
    fields += [0, status, 0, 0]  # solicited, status, randomizeSize, randomizePrice
    fields += [0]  # number of conditions
    fields += ["", "", "", 0, 0, "", order.filled, 0, 0, "", 0, 0, 0,
               completed_time, completed_status]
    if version >= 170:
        fields += _blank(5)
    return fields


def completed_orders_end() -> list[Field]:
    """102: end of completed orders (one field, no version)."""
    return [102]


# ---------------------------------------------------------------- executions

@dataclass
class ExecutionView:
    """What an execDetails message says about a fill."""

    exec_id: str
    time: str
    account: str
    side: str
    shares: float
    price: float
    perm_id: int
    client_id: int
    order_id: int
    cum_qty: float
    avg_price: float
    order_ref: str


def exec_details(version: int, req_id: int, inst: Instrument, ex: ExecutionView) -> list[Field]:
    """11: exactly 31 fields, no version (32 from 178 on)."""
    fields: list[Field] = [
        11, req_id, ex.order_id, *contract_fields(inst, inst.primary_exchange), ex.exec_id,
        ex.time, ex.account, inst.primary_exchange, ex.side, ex.shares, ex.price, ex.perm_id,
        ex.client_id, 0, ex.cum_qty, ex.avg_price, ex.order_ref, "", "", "", 2,
    ]
    if version >= 178:
        fields.append(0)  # pendingPriceRevision
    return fields


def exec_details_end(req_id: int) -> list[Field]:
    """55: end of executions."""
    return [55, 1, req_id]


def commission_report(exec_id: str, commission: float, realized_pnl: float | None) -> list[Field]:
    """59: exactly 8 fields."""
    pnl: Field = UNSET_DOUBLE_TEXT if realized_pnl is None else round(realized_pnl, 4)
    return [59, 1, exec_id, commission, "USD", pnl, "", ""]


# ---------------------------------------------------------------- canned empty answers

def family_codes_empty() -> list[Field]:
    """78: no family codes."""
    return [78, 0]


def mkt_depth_exchanges_empty() -> list[Field]:
    """80: no depth exchanges."""
    return [80, 0]


def news_providers_empty() -> list[Field]:
    """85: no news providers."""
    return [85, 0]


def scanner_parameters_empty() -> list[Field]:
    """19: empty scanner parameter XML."""
    return [19, 1, "<ScanParameterResponse/>"]


def receive_fa(fa_type: int) -> list[Field]:
    """16: empty FA configuration."""
    return [16, 1, fa_type, ""]


def market_rule_empty(rule_id: int) -> list[Field]:
    """93: a market rule without price increments."""
    return [93, rule_id, 0]
