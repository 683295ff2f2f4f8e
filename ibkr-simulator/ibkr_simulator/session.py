"""One client connection: handshake, request dispatch and the client's subscriptions."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from . import messages as m
from .accounts import account_tags, ledger_tags, value_holdings
from .config import MIN_SERVER_VERSION
from .market import Instrument
from .orders import Execution, SimOrder
from .protocol import (
    Field,
    ProtocolError,
    choose_version,
    decode_payload,
    encode_message,
    read_frame,
    read_handshake,
)
from .requests import (
    RequestError,
    parse_contract,
    parse_exec_filter,
    parse_market_data,
    parse_place_order,
    to_int,
)
from .state import Broker, Rejection, ib_time

if TYPE_CHECKING:
    from .requests import ExecutionFilter

log = logging.getLogger(__name__)

QUOTE_SIZE = 100.0
START_API = 71


class SessionClosed(Exception):
    """The session ends (duplicate client id, protocol error)."""


class Registry:
    """What a session needs from the server: the broker, versions and client ids in use."""

    def __init__(self, broker: Broker, max_version: int) -> None:
        self.broker = broker
        self.max_version = max_version
        self.client_ids: set[int] = set()


class Session:
    """Serves one TCP client until it disconnects or the server stops."""

    def __init__(self, registry: Registry, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.registry = registry
        self.broker = registry.broker
        self.reader = reader
        self.writer = writer
        self.version = MIN_SERVER_VERSION
        self.client_id: int | None = None
        self.market_data_type = 1
        self.positions_subscribed = False
        self.account_updates: str | None = None
        self.multi_subs: dict[int, str] = {}
        self.summary_subs: dict[int, set[str]] = {}
        self.tickers: dict[int, str] = {}
        self._reported: dict[str, set[str]] = {}
        self.handlers: dict[int, Callable[[list[str]], None]] = self._handler_table()

    # ------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Handshake, then serve requests until the connection ends."""
        try:
            await self._handshake()
            while True:
                self.dispatch(decode_payload(await read_frame(self.reader)))
        except (asyncio.IncompleteReadError, ConnectionError, ProtocolError, SessionClosed) as exc:
            log.debug("session %s ends: %r", self.client_id, exc)
        finally:
            self._detach()
            self.writer.close()

    def abort(self) -> None:
        """Drop the connection at once (fault injection and shutdown)."""
        self.writer.transport.abort()

    async def _handshake(self) -> None:
        low, high = await read_handshake(self.reader)
        version = choose_version(max(low, MIN_SERVER_VERSION), high, self.registry.max_version)
        if version is None:
            raise ProtocolError(f"no common server version with client range {low}..{high}")
        self.version = version
        self.send(m.handshake_reply(version, ib_time()))

    def _detach(self) -> None:
        if self in self.broker.listeners:
            self.broker.listeners.remove(self)
        if self.client_id is not None:
            self.registry.client_ids.discard(self.client_id)

    def send(self, fields: list[Field]) -> None:
        """Write one message (dropped when the connection is closing)."""
        if not self.writer.is_closing():
            self.writer.write(encode_message(fields))

    def error(self, req_id: int, code: int, text: str) -> None:
        """Send an error message for a request id."""
        self.send(m.error(self.version, req_id, code, text))

    # ------------------------------------------------------------ dispatch

    def dispatch(self, fields: list[str]) -> None:
        """Route one request; unknown or unsupported requests get an error, never silence."""
        try:
            msg_id = int(fields[0])
        except (IndexError, ValueError):
            self.error(-1, m.UNSUPPORTED_CODE, f"{m.UNSUPPORTED_TEXT}: unreadable message")
            return
        if self.client_id is None and msg_id != START_API:
            return
        if msg_id in self.broker.faults.unanswered:
            return
        handler = self.handlers.get(msg_id)
        try:
            if handler is not None:
                handler(fields)
            else:
                self._unsupported(msg_id, fields)
        except SessionClosed:
            raise
        except Exception:
            log.exception("request %s failed: %s", msg_id, fields)
            self.error(self._req_id_of(msg_id, fields), m.UNSUPPORTED_CODE,
                       f"{m.UNSUPPORTED_TEXT}: malformed request {msg_id}")

    def _req_id_of(self, msg_id: int, fields: list[str]) -> int:
        index = m.UNSUPPORTED_REQ_ID_INDEX.get(msg_id)
        if index is None and msg_id in (1, 9, 62, 76):
            index = 2
        if index is None and msg_id == 3:
            index = 1
        return to_int(fields[index], -1) if index is not None and index < len(fields) else -1

    def _unsupported(self, msg_id: int, fields: list[str]) -> None:
        if msg_id in m.SILENT_REQUESTS:
            return
        self.error(self._req_id_of(msg_id, fields), m.UNSUPPORTED_CODE,
                   f"{m.UNSUPPORTED_TEXT}: request type {msg_id}")

    def _handler_table(self) -> dict[int, Callable[[list[str]], None]]:
        return {
            1: self.req_mkt_data, 2: self.cancel_mkt_data, 3: self.place_order,
            4: self.cancel_order, 5: self.req_open_orders, 6: self.req_account_updates,
            7: self.req_executions, 8: self.req_ids, 9: self.req_contract_details,
            16: self.req_all_open_orders, 17: self.req_managed_accounts,
            18: lambda f: self.send(m.receive_fa(to_int(f[2]) if len(f) > 2 else 1)),
            24: lambda f: self.send(m.scanner_parameters_empty()),
            49: lambda f: self.send(m.current_time(int(time.time()))),
            58: lambda f: self.broker.global_cancel(), 59: self.req_market_data_type,
            61: self.req_positions, 62: self.req_account_summary,
            63: self.cancel_account_summary, 64: self.cancel_positions, 71: self.start_api,
            76: self.req_account_updates_multi, 77: self.cancel_account_updates_multi,
            80: lambda f: self.send(m.family_codes_empty()),
            82: lambda f: self.send(m.mkt_depth_exchanges_empty()),
            85: lambda f: self.send(m.news_providers_empty()),
            91: lambda f: self.send(m.market_rule_empty(to_int(f[1]) if len(f) > 1 else 0)),
            99: self.req_completed_orders,
        }

    # ------------------------------------------------------------ start-up

    def start_api(self, fields: list[str]) -> None:
        """71: register the client id, then send managed accounts and the next order id."""
        if self.client_id is not None:
            return
        client_id = to_int(fields[2] if len(fields) > 2 else "")
        if client_id in self.registry.client_ids:
            self.error(-1, *m.ERR_DUPLICATE_CLIENT_ID)
            raise SessionClosed(f"client id {client_id} in use")
        self.client_id = client_id
        self.registry.client_ids.add(client_id)
        self.broker.listeners.append(self)
        self.send(m.managed_accounts(self.broker.account_ids))
        self.send(m.next_valid_id(self.broker.next_order_id()))
        for code, text in m.FARM_MESSAGES:
            self.error(-1, code, text)

    def req_ids(self, fields: list[str]) -> None:
        """8: next valid order id."""
        self.send(m.next_valid_id(self.broker.next_order_id()))

    def req_managed_accounts(self, fields: list[str]) -> None:
        """17: managed accounts."""
        self.send(m.managed_accounts(self.broker.account_ids))

    # ------------------------------------------------------------ contracts and market data

    def req_contract_details(self, fields: list[str]) -> None:
        """9: details of one stock or ETF, or error 200."""
        req_id = to_int(fields[2])
        inst = self.broker.resolve(parse_contract(fields, 3))
        if inst is None:
            self.error(req_id, *m.ERR_NO_SECURITY)
            return
        self.send(m.contract_details(self.version, req_id, inst))
        self.send(m.contract_details_end(req_id))

    def req_market_data_type(self, fields: list[str]) -> None:
        """59: live (1), frozen (2), delayed (3) or delayed frozen (4)."""
        self.market_data_type = to_int(fields[2], 1) if len(fields) > 2 else 1

    def req_mkt_data(self, fields: list[str]) -> None:
        """1: snapshot (ticks then 57) or streaming ticks.

        Without a live subscription for the symbol (``live_data: false``), live requests (types 1
        and 2) get error 354 and no data, as IB answers them; delayed requests (3 and 4) get delayed
        ticks, marked by type 3 / 4 and warning 10167. With one, delayed requests get live data.
        """
        req = parse_market_data(fields)
        inst = self.broker.resolve(req.contract)
        if inst is None:
            self.error(req.req_id, *m.ERR_NO_SECURITY)
            return
        data_type = self._data_type(inst)
        if data_type is None:
            self.error(req.req_id, *m.ERR_NOT_SUBSCRIBED)
            return
        if data_type in (3, 4):
            self.error(req.req_id, *m.WARN_DELAYED)
        self.send(m.market_data_type(req.req_id, data_type))
        self._send_ticks(req.req_id, inst.symbol)
        if req.snapshot:
            self.send(m.tick_snapshot_end(req.req_id))
        else:
            self.tickers[req.req_id] = inst.symbol

    def _data_type(self, inst: Instrument) -> int | None:
        """The market data type this client gets for the instrument; None: none at all."""
        requested = self.market_data_type
        if inst.live_data:
            return 2 if requested in (2, 4) else 1
        return requested if requested in (3, 4) else None

    def cancel_mkt_data(self, fields: list[str]) -> None:
        """2: stop streaming."""
        self.tickers.pop(to_int(fields[2]), None)

    def _send_ticks(self, req_id: int, symbol: str) -> None:
        quote = self.broker.market.quote(symbol)
        delayed = self._data_type(self.broker.market.instruments[symbol]) in (3, 4)
        ticks = ((m.TICK_BID, quote.bid, QUOTE_SIZE), (m.TICK_ASK, quote.ask, QUOTE_SIZE),
                 (m.TICK_LAST, quote.last, QUOTE_SIZE), (m.TICK_CLOSE, quote.close, 0.0))
        for tick_type, price, size in ticks:
            if price > 0:
                tick_id = m.DELAYED_TICK[tick_type] if delayed else tick_type
                self.send(m.tick_price(req_id, tick_id, price, size))

    # ------------------------------------------------------------ orders

    def place_order(self, fields: list[str]) -> None:
        """3: new order, modification or whatIf."""
        order_id = to_int(fields[1]) if len(fields) > 1 else -1
        try:
            req = parse_place_order(fields, self.version)
        except RequestError as exc:
            self.error(order_id, m.ERR_UNSUPPORTED_ORDER[0], str(exc))
            return
        assert self.client_id is not None
        if req.what_if:
            self._what_if(req.order_id, self.broker.what_if(req), fields)
            return
        existing = self.broker.find_order(self.client_id, req.order_id)
        outcome: SimOrder | Rejection | None
        if existing is not None:
            outcome = (self.broker.modify(existing, req) if existing.is_active
                       else Rejection(*m.ERR_DUPLICATE_ORDER_ID))
        else:
            outcome = self.broker.submit(self.client_id, req)
        if isinstance(outcome, Rejection):
            self.error(req.order_id, outcome.code, outcome.text)

    def _what_if(self, order_id: int, outcome: m.OrderStateView | Rejection,
                 fields: list[str]) -> None:
        if isinstance(outcome, Rejection):
            self.error(order_id, outcome.code, outcome.text)
            return
        req = parse_place_order(fields, self.version)
        inst = self.broker.resolve(parse_contract(fields, 2))
        assert inst is not None and self.client_id is not None
        view = m.OrderView(order_id, self.client_id, 0, req.account, req.action, req.quantity,
                           req.order_type, req.lmt_price, req.tif, req.order_ref)
        self.send(m.open_order(self.version, inst, view, outcome, what_if=True))

    def cancel_order(self, fields: list[str]) -> None:
        """4: cancel one of this client's working orders."""
        order_id = to_int(fields[2])
        assert self.client_id is not None
        order = self.broker.find_order(self.client_id, order_id)
        if order is None or not order.is_active:
            self.error(order_id, m.ERR_ORDER_NOT_FOUND,
                       f"OrderId {order_id} that needs to be cancelled is not found.")
            return
        self.broker.cancel(order)

    def req_open_orders(self, fields: list[str]) -> None:
        """5: this client's working orders."""
        self._send_open_orders([o for o in self.broker.open_orders()
                                if o.client_id == self.client_id])

    def req_all_open_orders(self, fields: list[str]) -> None:
        """16: every client's working orders."""
        self._send_open_orders(self.broker.open_orders())

    def _send_open_orders(self, orders: list[SimOrder]) -> None:
        for order in orders:
            self._send_order(order)
        self.send(m.open_order_end())

    def req_completed_orders(self, fields: list[str]) -> None:
        """99: orders filled, cancelled or rejected."""
        for order in self.broker.completed_orders():
            inst = self.broker.instrument(order.symbol)
            self.send(m.completed_order(self.version, inst, _order_view(order), order.status,
                                        order.completed_time, order.completed_status))
        self.send(m.completed_orders_end())

    def req_executions(self, fields: list[str]) -> None:
        """7: executions matching the filter, each with its commission report."""
        req_id, flt = parse_exec_filter(fields)
        for ex in self.broker.executions:
            if _matches(ex, flt):
                self._send_execution(req_id, ex)
        self.send(m.exec_details_end(req_id))

    def _send_order(self, order: SimOrder) -> None:
        inst = self.broker.instrument(order.symbol)
        state = m.OrderStateView(order.status)
        self.send(m.open_order(self.version, inst, _order_view(order), state))
        self._send_status(order)

    def _send_status(self, order: SimOrder) -> None:
        self.send(m.order_status(order.order_id, order.status, order.filled, order.remaining,
                                 order.avg_fill_price, order.perm_id, order.last_fill_price,
                                 order.client_id))

    def _send_execution(self, req_id: int, ex: Execution) -> None:
        inst = self.broker.instrument(ex.symbol)
        view = m.ExecutionView(ex.exec_id, ex.time, ex.account, ex.side, ex.shares, ex.price,
                               ex.perm_id, ex.client_id, ex.order_id, ex.cum_qty,
                               ex.avg_price, ex.order_ref)
        self.send(m.exec_details(self.version, req_id, inst, view))
        self.send(m.commission_report(ex.exec_id, ex.commission, ex.realized_pnl))

    # ------------------------------------------------------------ accounts

    def req_positions(self, fields: list[str]) -> None:
        """61: all positions of all accounts, then updates until cancelled."""
        self.positions_subscribed = True
        for account_id in self.broker.account_ids:
            self._send_positions(account_id)
        self.send(m.position_end())

    def cancel_positions(self, fields: list[str]) -> None:
        """64: stop position updates."""
        self.positions_subscribed = False

    def req_account_updates(self, fields: list[str]) -> None:
        """6: account values and portfolio of one account, then updates."""
        subscribe = fields[2] == "1" if len(fields) > 2 else False
        if not subscribe:
            self.account_updates = None
            return
        account_id = fields[3] if len(fields) > 3 and fields[3] else self.broker.account_ids[0]
        if account_id not in self.broker.accounts:
            account_id = self.broker.account_ids[0]
        self.account_updates = account_id
        self._send_account_update(account_id)
        self.send(m.account_download_end(account_id))

    def req_account_updates_multi(self, fields: list[str]) -> None:
        """76: account values of one account (or all) for a request id."""
        req_id = to_int(fields[2])
        account = fields[3] if len(fields) > 3 else ""
        self.multi_subs[req_id] = account
        for account_id in self._accounts_matching(account):
            self._send_multi(req_id, account_id)
        self.send(m.account_update_multi_end(req_id))

    def cancel_account_updates_multi(self, fields: list[str]) -> None:
        """77: stop one reqAccountUpdatesMulti."""
        self.multi_subs.pop(to_int(fields[2]), None)

    def req_account_summary(self, fields: list[str]) -> None:
        """62: the requested tags of every account, then updates until cancelled."""
        req_id = to_int(fields[2])
        tags = {t for t in (fields[4] if len(fields) > 4 else "").split(",") if t}
        self.summary_subs[req_id] = tags
        for account_id in self.broker.account_ids:
            self._send_summary(req_id, account_id)
        self.send(m.account_summary_end(req_id))

    def cancel_account_summary(self, fields: list[str]) -> None:
        """63: stop one account summary subscription."""
        self.summary_subs.pop(to_int(fields[2]), None)

    def _accounts_matching(self, account: str) -> list[str]:
        if account in ("", "All"):
            return self.broker.account_ids
        return [account] if account in self.broker.accounts else []

    def _tags(self, account_id: str) -> list[tuple[str, str, str]]:
        return account_tags(self.broker.accounts[account_id], self.broker.market)

    def _send_positions(self, account_id: str) -> None:
        account = self.broker.accounts[account_id]
        key = f"pos:{account_id}"
        current = set(account.holdings)
        for symbol in sorted(current | self._reported.get(key, set())):
            holding = account.holdings.get(symbol)
            qty, cost = (holding.quantity, holding.avg_cost) if holding else (0.0, 0.0)
            self.send(m.position(account_id, self._inst(symbol), qty, round(cost, 6)))
        self._reported[key] = current

    def _send_account_update(self, account_id: str) -> None:
        for tag, value, currency in self._tags(account_id):
            self.send(m.account_value(tag, value, currency, account_id))
        account = self.broker.accounts[account_id]
        key = f"pf:{account_id}"
        rows = {r.symbol: r for r in value_holdings(account, self.broker.market)}
        for symbol in sorted(set(rows) | self._reported.get(key, set())):
            r = rows.get(symbol)
            row = (m.PortfolioRow(r.quantity, r.market_price, r.market_value, r.avg_cost,
                                  r.unrealized_pnl, r.realized_pnl)
                   if r else m.PortfolioRow(0.0, 0.0, 0.0, 0.0, 0.0, 0.0))
            self.send(m.portfolio_value(self._inst(symbol), row, account_id))
        self._reported[key] = set(rows)
        self.send(m.account_time(datetime.now(UTC).strftime("%H:%M")))

    def _send_multi(self, req_id: int, account_id: str) -> None:
        for tag, value, currency in self._tags(account_id):
            self.send(m.account_update_multi(req_id, account_id, tag, value, currency))

    def _send_summary(self, req_id: int, account_id: str) -> None:
        wanted = self.summary_subs.get(req_id, set())
        rows = [row for row in self._tags(account_id) if row[0] in wanted]
        for tag in sorted(t for t in wanted if t.startswith("$LEDGER")):
            which = tag.partition(":")[2].upper() or "BASE"
            rows += ledger_tags(self.broker.accounts[account_id], self.broker.market, which)
        for tag, value, currency in rows:
            self.send(m.account_summary(req_id, account_id, tag, value, currency))

    def _inst(self, symbol: str) -> Instrument:
        return self.broker.market.ensure(symbol)

    # ------------------------------------------------------------ broker notifications

    def order_changed(self, order: SimOrder) -> None:
        """openOrder then orderStatus, to the client that placed the order."""
        if order.client_id == self.client_id:
            self._send_order(order)

    def order_filled(self, order: SimOrder, execution: Execution) -> None:
        """execDetails, orderStatus, openOrder, commissionReport (owner only)."""
        if order.client_id != self.client_id:
            return
        inst = self.broker.instrument(order.symbol)
        view = m.ExecutionView(execution.exec_id, execution.time, execution.account,
                               execution.side, execution.shares, execution.price,
                               execution.perm_id, execution.client_id, execution.order_id,
                               execution.cum_qty, execution.avg_price, execution.order_ref)
        self.send(m.exec_details(self.version, -1, inst, view))
        self._send_status(order)
        self.send(m.open_order(self.version, inst, _order_view(order),
                               m.OrderStateView(order.status)))
        self.send(m.commission_report(execution.exec_id, execution.commission,
                                      execution.realized_pnl))

    def order_cancelled(self, order: SimOrder) -> None:
        """orderStatus Cancelled, then error 202 (owner only)."""
        if order.client_id == self.client_id:
            self._send_status(order)
            self.error(order.order_id, *m.ERR_CANCELLED)

    def account_changed(self, account_id: str) -> None:
        """Refresh every subscription that covers the account."""
        if self.positions_subscribed:
            self._send_positions(account_id)
        if self.account_updates == account_id:
            self._send_account_update(account_id)
        for req_id, account in self.multi_subs.items():
            if account_id in self._accounts_matching(account):
                self._send_multi(req_id, account_id)
        for req_id in self.summary_subs:
            self._send_summary(req_id, account_id)

    def quote_changed(self, symbol: str) -> None:
        """New ticks for streaming subscriptions of the symbol."""
        for req_id, subscribed in self.tickers.items():
            if subscribed == symbol:
                self._send_ticks(req_id, symbol)


def _order_view(order: SimOrder) -> m.OrderView:
    return m.OrderView(order.order_id, order.client_id, order.perm_id, order.account,
                       order.action, order.quantity, order.order_type, order.lmt_price,
                       order.tif, order.order_ref, order.filled)


def _matches(ex: Execution, flt: ExecutionFilter) -> bool:
    side = {"BUY": "BOT", "SELL": "SLD"}.get(flt.side.upper(), flt.side.upper())
    return ((not flt.client_id or ex.client_id == flt.client_id)
            and (not flt.account or ex.account == flt.account)
            and (not flt.symbol or ex.symbol == flt.symbol)
            and (not flt.sec_type or flt.sec_type == "STK")
            and (not side or ex.side == side))

